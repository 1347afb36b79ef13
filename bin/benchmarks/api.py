"""`--scale`, the API: p50/p95 of create (POST /api/v1/jobs, the local provider, a small
PNG), get (GET /api/v1/jobs/<id>) and list (GET /api/v1/jobs, the first page and a
filtered one), as a script would call them, beside the pages' figures.

Each row uses its own token (made by inside.pick with jobs.api.tokens.create for the
staff user, a member of every team): the per-token rate limit (API_RATE_PER_MINUTE) stays
as production has it, and no row's requests count against another's."""

import io

import httpx
from PIL import Image

from benchmarks.pages import PAGE, WARM_UP, timed_calls

CREATE = 0.300  # no goal in the issue for a create (it stores the file): this is ours


def small_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (96, 80), (40, 90, 160)).save(out, "PNG")
    return out.getvalue()


def timed(send, count: int) -> dict:
    """p50/p95 of `count` calls of send(i) -> response, after WARM_UP untimed ones."""
    for i in range(WARM_UP):
        send(i)
    return timed_calls(send, count, first=WARM_UP)


def rows(base: str, facts: dict, count: int) -> list[dict]:
    tokens = iter(facts["api_tokens"])

    def client() -> httpx.Client:
        # What a TLS-terminating proxy adds, so the production settings apply as they are.
        headers = {"Authorization": f"Bearer {next(tokens)}", "X-Forwarded-Proto": "https"}
        return httpx.Client(base_url=base, timeout=600, headers=headers)

    png = small_png()
    pages = facts["job_pages"]
    search = f"/api/v1/jobs?q={facts['search']}&state=succeeded"
    calls = [
        (
            "API create (local, 96x80 PNG)",
            CREATE,
            lambda http, i: http.post(
                "/api/v1/jobs",
                data={"provider": "local", "local-scale": "2"},
                files={"images": (f"bench-{i}.png", png, "image/png")},
            ),
        ),
        ("API get a job", PAGE, lambda http, i: http.get(f"/api/v1/jobs/{pages[i % len(pages)]}")),
        ("API list, first page", PAGE, lambda http, i: http.get("/api/v1/jobs")),
        ("API list, search + state", PAGE, lambda http, i: http.get(search)),
    ]
    table = []
    for label, goal, call in calls:
        with client() as http:
            found = timed(lambda i, http=http, call=call: call(http, i), count)
        table.append({"page": label, "as": "staff (token)", "goal": goal, **found})
    return table
