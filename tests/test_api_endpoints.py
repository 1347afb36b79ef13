"""The API's endpoints (/api/v1/), per role: the same checks and words as the pages, as
problem+json; owner, teammate, outsider (404) and, on spend, member (403) vs manager."""

import hashlib
import json
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from unittest import mock

import pytest
from django.utils import timezone

from billing.models import LedgerEntry
from jobs import quotes, tasks
from jobs.api import jobs as api_jobs
from jobs.api import tokens
from jobs.imaging import ImageInfo
from jobs.models import EventDelivery, Job
from tests.images import image_bytes, upload
from tests.support import QuietHTTPServer
from tests.test_uploads import BAD_UPLOADS, stored_files

API = "/api/v1"


def bearer(user) -> dict:
    _row, token = tokens.create(user, "t")
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


@pytest.fixture
def as_owner(owner):
    return bearer(owner)


def create(client, auth, *files, provider="local", scale="2", **extra):
    data = {"provider": provider, **extra}
    if provider == "local":
        data["local-scale"] = scale
    if files:
        data["images"] = list(files)
    return client.post(f"{API}/jobs", data, **auth)


def problem(response, status) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    return body


@pytest.fixture
def priced(settings):
    """apixo as a real (billed) provider at $0.01 an image; its submits are not sent."""
    settings.PROVIDER_SETTINGS = {
        **settings.PROVIDER_SETTINGS,
        "apixo": {"api_key": "k", "base_url": "http://127.0.0.1:9"},
    }
    with mock.patch.object(tasks, "enqueue_submit"):
        yield


# --- catalog ------------------------------------------------------------------------------
def test_it_needs_a_token(client, db):
    body = problem(client.get(f"{API}/providers"), 401)
    assert "Bearer" in body["detail"]


def test_it_lists_the_providers_and_their_options(client, as_owner):
    response = client.get(f"{API}/providers", **as_owner)
    assert response.status_code == 200
    found = {p["slug"]: p for p in response.json()}
    local = found["local"]
    assert local["available"] is True and local["sandbox"] is False
    (scale,) = [o for o in local["options"] if o["name"] == "scale"]
    assert scale["kind"] == "choice" and scale["default"] == 2
    assert [c["value"] for c in scale["choices"]] == [2, 3, 4]
    assert found["apixo"]["sandbox"] is True  # no key set: its sandbox


def quote(client, auth, images, providers, **extra):
    body = {"images": images, "providers": providers, **extra}
    return client.post(f"{API}/quote", json.dumps(body), content_type="application/json", **auth)


def test_the_quote_is_the_upload_pages_preview(client, as_owner, team):
    team.monthly_budget = Decimal("5.00")
    team.save()
    images = [{"name": "a.png", "width": 1000, "height": 800, "bytes": 50_000}]
    choices = [
        {"provider": "apixo", "options": {"resolution": "4k"}},
        {"provider": "local", "options": {"scale": 3}},
    ]
    response = quote(client, as_owner, images, choices)
    assert response.status_code == 200, response.content
    body = response.json()
    page = quotes.preview(
        [("apixo", {"resolution": "4k"}), ("local", {"scale": "3"})],
        [("a.png", ImageInfo("PNG", 1000, 800, False, 50_000))],
        team=team,
    )
    assert [Decimal(line["amount"]) for line in body["lines"]] == [
        line.quote.amount for line in page.lines
    ]
    apixo, local = body["lines"]
    assert apixo["sandbox"] is True and apixo["tier"] and apixo["why"]
    assert (local["width"], local["height"]) == (3000, 2400)
    assert Decimal(body["total"]) == page.total
    assert Decimal(body["sandbox_total"]) == page.sandbox_total
    assert body["budget"]["over"] is False and Decimal(body["budget"]["left"]) == Decimal("5")
    assert body["blocked"] == ""


def test_the_quote_refuses_per_line_in_the_pages_words(client, as_owner):
    images = [
        {"name": "tiny.png", "width": 40, "height": 100, "bytes": 500},
        {"name": "ok.png", "width": 200, "height": 200, "bytes": 5_000},
    ]
    choices = [
        {"provider": "local", "options": {"scale": 5}},
        {"provider": "magic", "options": {}},
    ]
    body = quote(client, as_owner, images, choices).json()
    assert body["file_refusals"][0]["image"] == "tiny.png"
    assert "at least 64x64" in body["file_refusals"][0]["refusal"]
    refusals = [line["refusal"] for line in body["lines"]]
    assert "Scale '5' is not offered. Allowed: 2, 3, 4." in refusals
    assert "There is no provider called 'magic'." in refusals
    assert body["blocked"] == "Fix the refused lines first."


def test_the_quote_says_when_it_is_over_budget(client, as_owner, team, priced):
    team.monthly_budget = Decimal("0.01")
    team.save()
    images = [{"name": f"{n}.png", "width": 500, "height": 500, "bytes": 9} for n in "ab"]
    body = quote(client, as_owner, images, [{"provider": "apixo", "options": {}}]).json()
    assert body["budget"]["over"] is True
    assert body["blocked"] == "Over what is left of the budget."


def test_the_quote_refuses_a_foreign_team(client, as_owner, other_team):
    images = [{"name": "a.png", "width": 100, "height": 100}]
    response = quote(client, as_owner, images, [{"provider": "local"}], team=other_team.pk)
    assert problem(response, 422)["errors"] == ["Pick one of your teams."]


# --- create -------------------------------------------------------------------------------
def test_it_creates_jobs_like_the_upload_form(client, as_owner, owner, team, inline_tasks):
    with inline_tasks():
        response = create(client, as_owner, upload("a.png"), upload("b.png"), scale="3")
    assert response.status_code == 201, response.content
    body = response.json()
    assert [j["input_name"] for j in body["jobs"]] == ["a.png", "b.png"]
    jobs = list(Job.objects.order_by("pk"))
    assert {str(j.batch) for j in jobs} == {body["batch"]}
    for job in jobs:
        assert job.team == team and job.created_by == owner
        assert job.state == Job.State.SUCCEEDED, job.error_message
        assert (job.output_width, job.output_height) == (96 * 3, 80 * 3)
        assert job.api_token.user == owner


@pytest.mark.parametrize("name,data,message", BAD_UPLOADS, ids=[b[0] for b in BAD_UPLOADS])
def test_it_refuses_bad_files_in_the_pages_words(client, as_owner, settings, name, data, message):
    body = problem(create(client, as_owner, upload(name, data)), 422)
    assert body["detail"].startswith("Nothing was uploaded")
    assert any(e.startswith(f"{name}: ") and message in e for e in body["errors"])
    assert Job.objects.count() == 0 and stored_files(settings) == []


def test_a_file_over_the_limit_is_413(client, as_owner, settings):
    data = image_bytes(100, 100) + b"\0" * (30 * 1024 * 1024)
    body = problem(create(client, as_owner, upload("huge.png", data)), 413)
    assert body["errors"] == ["huge.png: The file is 30.0 MB; the limit is 25.0 MB."]
    assert stored_files(settings) == []


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"provider": "magic"}, "There is no provider called 'magic'."),
        ({"scale": "5"}, "Local (Pillow): Scale '5' is not offered. Allowed: 2, 3, 4."),
        ({"provider": "local", "local-colour": "red"}, "has no option colour"),
    ],
    ids=["unknown provider", "bad option", "unknown option"],
)
def test_it_refuses_bad_choices_in_the_pages_words(client, as_owner, fields, message):
    extra = {k: v for k, v in fields.items() if k != "scale"}
    body = problem(create(client, as_owner, upload(), scale=fields.get("scale", "2"), **extra), 422)
    assert any(message in e for e in body["errors"]), body["errors"]
    assert Job.objects.count() == 0


def test_it_refuses_a_submission_over_budget(client, as_owner, team, priced):
    team.monthly_budget = Decimal("0.01")
    team.save()
    response = create(client, as_owner, upload("a.png"), upload("b.png"), provider="apixo")
    body = problem(response, 422)
    assert body["errors"][0].startswith("This would go over Studio's monthly budget of $0.01")
    assert Job.objects.count() == 0 and LedgerEntry.objects.count() == 0


def test_it_refuses_a_foreign_team_and_no_files(client, as_owner, other_team):
    for team in (str(other_team.pk), "abc"):
        body = problem(create(client, as_owner, upload(), team=team), 422)
        assert body["errors"] == ["Pick one of your teams."]
    assert problem(create(client, as_owner), 422)["errors"] == ["Choose at least one image."]


def test_too_many_files_is_413(client, as_owner, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 2
    body = problem(create(client, as_owner, upload("a.png"), upload("b.png"), upload("c.png")), 413)
    assert body["detail"].startswith("The request is too large: at most 2 files")


def test_it_wants_a_form_not_json(client, as_owner):
    body = {"provider": "local", "image_url": "https://example.com/a.png"}
    response = client.post(
        f"{API}/jobs", json.dumps(body), content_type="application/json", **as_owner
    )
    assert "multipart/form-data" in problem(response, 415)["detail"]


@pytest.mark.parametrize(
    "url,message",
    [
        ("https://127.0.0.1/cat.png", "private network address"),
        ("https://[::1]:8443/cat.png", "private network address"),
        ("http://127.0.0.1:8000/cat.png", "not https"),
        ("file:///etc/passwd", "not http(s)"),
    ],
)
def test_an_image_url_is_held_to_the_doors_address_rules(client, as_owner, url, message):
    body = problem(create(client, as_owner, image_url=url), 422)
    assert body["errors"][0].startswith("image_url: ") and message in body["errors"][0]
    assert Job.objects.count() == 0


class Files:
    """A real HTTP server on loopback serving `files[path] = bytes`."""

    def __init__(self):
        self.files = {}
        files = self.files

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                data = files.get(self.path)
                self.send_response(200 if data is not None else 404)
                self.send_header("Content-Length", str(len(data or b"")))
                self.end_headers()
                self.wfile.write(data or b"")

            def log_message(self, *args):
                pass

        self.server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def served(monkeypatch):
    """A file server on loopback that image_url may reach: the tests cannot reach the
    internet, so the one edge widened is the door's list of trusted hosts for image_url
    (jobs.api.jobs.image_url_hosts); the fetch itself is the door's real download."""
    files = Files()
    monkeypatch.setattr(api_jobs, "image_url_hosts", lambda: frozenset({"127.0.0.1"}))
    yield files
    files.close()


def test_it_fetches_an_image_url_through_the_door(client, as_owner, served, inline_tasks):
    served.files["/pics/cat%20photo.png"] = data = image_bytes(120, 100)
    with inline_tasks():
        response = create(client, as_owner, image_url=f"{served.url}/pics/cat%20photo.png")
    assert response.status_code == 201, response.content
    job = Job.objects.get()
    assert job.input_name == "cat photo.png" and (job.input_width, job.input_height) == (120, 100)
    assert job.input_file.read() == data
    assert job.state == Job.State.SUCCEEDED


def test_an_image_url_is_capped_and_checked_like_an_upload(client, as_owner, served, settings):
    settings.MAX_UPLOAD_BYTES = 1000
    served.files["/big.png"] = image_bytes(200, 200) + b"\0" * 2000
    served.files["/notes.png"] = b"not pixels"
    body = problem(create(client, as_owner, image_url=f"{served.url}/big.png"), 413)
    assert body["errors"] == ["image_url: the image is larger than 1000 bytes, the upload limit."]
    body = problem(create(client, as_owner, image_url=f"{served.url}/notes.png"), 422)
    assert "notes.png: " in body["errors"][0] and "not an image we can read" in body["errors"][0]
    body = problem(create(client, as_owner, image_url=f"{served.url}/gone.png"), 422)
    assert body["errors"] == ["image_url: the address answered 404: there is no image there."]
    assert Job.objects.count() == 0


def test_it_keeps_the_webhook_url_and_the_token(client, owner, team, priced):
    row, token = tokens.create(owner, "script")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    hook = "https://93.184.216.34/hooks/upscaled"  # a public address, not contacted
    response = create(client, auth, upload(), provider="apixo", webhook_url=hook)
    assert response.status_code == 201, response.content
    job = Job.objects.get()
    assert (job.webhook_url, job.api_token) == (hook, row)
    assert response.json()["jobs"][0]["webhook_url"] == hook


@pytest.mark.parametrize(
    "hook,message",
    [
        ("https://user:pw@93.184.216.34/h", "must not carry a user name or password"),
        ("ftp://93.184.216.34/h", "must be an http(s) address"),
        ("https://10.0.0.5/h", "private network address"),
        ("http://127.0.0.1:9000/h", "not https"),
    ],
)
def test_it_refuses_a_webhook_url_the_door_would_refuse(client, as_owner, settings, hook, message):
    settings.SANDBOX_ENABLED = False  # production: loopback is no place to deliver to
    body = problem(create(client, as_owner, upload(), webhook_url=hook), 422)
    assert message in body["errors"][0]
    assert Job.objects.count() == 0


# --- read ---------------------------------------------------------------------------------
def test_owner_and_teammate_read_a_job_and_an_outsider_gets_404(
    client, owner, teammate, outsider, team, make_job
):
    job = make_job(owner, team, scale=3)
    for user in (owner, teammate):
        response = client.get(f"{API}/jobs/{job.pk}", **bearer(user))
        assert response.status_code == 200
        body = response.json()
        assert body["state"] == "succeeded" and body["created_by"] == "alice"
        assert [e["state"] for e in body["events"]] == [
            "queued",
            "submitting",
            "fetching",
            "succeeded",
        ]
        assert body["input"]["width"] == 96 and body["output"]["width"] == 288
        assert body["options"] == {"scale": 3}
        assert body["cost"]["status"] == "charged" and body["cost"]["price"] == "free"
        assert body["result"] == f"/api/v1/jobs/{job.pk}/result"
        assert body["webhook_deliveries"] == 0 and body["kept"] is False
    problem(client.get(f"{API}/jobs/{job.pk}", **bearer(outsider)), 404)
    for other in ("999999", "-5", str(2**64)):
        problem(client.get(f"{API}/jobs/{other}", **bearer(owner)), 404)
    problem(client.get(f"{API}/jobs/abc", **bearer(owner)), 422)


def make_jobs(owner, team, n, make_job):
    return [make_job(owner, team, name=f"p{i}.png", run=False) for i in range(n)]


def test_the_list_walks_pages_by_cursor(client, owner, team, make_job):
    made = make_jobs(owner, team, 5, make_job)
    auth = bearer(owner)
    seen, url = [], f"{API}/jobs?limit=2"
    while url:
        body = client.get(url, **auth).json()
        seen += [j["id"] for j in body["items"]]
        last, url = body, body["next"]
    assert seen == [j.pk for j in reversed(made)]
    back = client.get(last["previous"], **auth).json()
    assert [j["id"] for j in back["items"]] == [made[2].pk, made[1].pk]
    first = client.get(back["previous"], **auth).json()
    assert [j["id"] for j in first["items"]] == [made[4].pk, made[3].pk]
    assert first["previous"] is None


def test_the_list_takes_historys_filters(client, owner, teammate, outsider, team, make_job):
    a = make_job(owner, team, name="cat.png")
    b = make_job(teammate, team, name="dog.png", run=False, width=100)  # not a reuse of a
    auth = bearer(owner)

    def ids(query, who=auth):
        response = client.get(f"{API}/jobs?{query}", **who)
        assert response.status_code == 200, response.content
        return [j["id"] for j in response.json()["items"]]

    assert ids("") == [b.pk, a.pk]
    assert ids("q=cat") == [a.pk]
    assert ids("state=queued") == [b.pk]
    assert ids(f"person={teammate.pk}") == [b.pk]
    assert ids(f"batch={a.batch}") == [a.pk]
    assert ids(f"since={timezone.localdate()}") == [b.pk, a.pk]
    assert ids("", bearer(outsider)) == []


@pytest.mark.parametrize(
    "query,error",
    [
        ("since=yesterday", "since: enter a valid date"),
        ("state=sleeping", "state: 'sleeping' is not one of the choices"),
        ("provider=magic", "provider: 'magic' is not one of the choices"),
        ("person=424242", "person: no such person in your teams"),
        ("team=424242", "team: '424242' is not one of the choices"),
        (f"person={2**64}", "person: no such id"),
        ("older=abc", "older: That page link was not understood"),
    ],
)
def test_a_bad_filter_is_a_422_naming_it(client, as_owner, query, error):
    body = problem(client.get(f"{API}/jobs?{query}", **as_owner), 422)
    assert any(e.startswith(error) for e in body["errors"]), body["errors"]


# --- cancel, run again, result ------------------------------------------------------------
def test_a_teammate_cancels_a_queued_job_once(client, owner, teammate, outsider, team, make_job):
    job = make_job(owner, team, run=False)
    problem(client.post(f"{API}/jobs/{job.pk}/cancel", **bearer(outsider)), 404)
    response = client.post(f"{API}/jobs/{job.pk}/cancel", **bearer(teammate))
    assert response.status_code == 200, response.content
    assert response.json()["state"] == "canceled"
    assert "Canceled by bob." in response.json()["events"][-1]["detail"]
    body = problem(client.post(f"{API}/jobs/{job.pk}/cancel", **bearer(teammate)), 409)
    assert body["detail"] == f"Job {job.pk} has already ended (Canceled)."


def rerun(client, job, auth, providers=None):
    body = {} if providers is None else {"providers": providers}
    return client.post(
        f"{API}/jobs/{job.pk}/rerun", json.dumps(body), content_type="application/json", **auth
    )


def test_run_again_with_other_options(client, owner, teammate, outsider, team, make_job):
    job = make_job(owner, team)
    response = rerun(
        client, job, bearer(teammate), [{"provider": "local", "options": {"scale": 4}}]
    )
    assert response.status_code == 201, response.content
    (again,) = response.json()["jobs"]
    assert again["source_job"] == job.pk and again["options"] == {"scale": 4}
    assert again["created_by"] == "bob"
    same = rerun(client, job, bearer(owner)).json()["jobs"][0]
    assert (same["provider"], same["options"]) == ("local", {"scale": 2})
    bad = problem(
        rerun(client, job, bearer(owner), [{"provider": "local", "options": {"scale": 9}}]), 422
    )
    assert bad["errors"] == ["Local (Pillow): Scale '9' is not offered. Allowed: 2, 3, 4."]
    problem(rerun(client, job, bearer(outsider)), 404)
    assert Job.objects.count() == 3


def test_the_result_is_the_pages_download(client, owner_client, owner, outsider, team, make_job):
    job = make_job(owner, team)
    page = owner_client.get(f"/jobs/{job.pk}/download/")
    response = client.get(f"{API}/jobs/{job.pk}/result", **bearer(owner))
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert body == job.output_file.open("rb").read() == b"".join(page.streaming_content)
    assert response["Content-Disposition"] == page["Content-Disposition"]
    problem(client.get(f"{API}/jobs/{job.pk}/result", **bearer(outsider)), 404)


def test_no_result_is_404_and_gone_files_are_410(client, owner, team, make_job):
    waiting = make_job(owner, team, run=False)
    problem(client.get(f"{API}/jobs/{waiting.pk}/result", **bearer(owner)), 404)
    done = make_job(owner, team)
    Job.objects.filter(pk=done.pk).update(files_expired_at=timezone.now())
    body = problem(client.get(f"{API}/jobs/{done.pk}/result", **bearer(owner)), 410)
    assert body["detail"].startswith("The files of this job were deleted on")


# --- spend --------------------------------------------------------------------------------
@pytest.fixture
def charged(team, other_team, owner, outsider):
    for n, (who, where, amount) in enumerate(
        [(owner, team, "0.40"), (owner, team, "0.10"), (outsider, other_team, "2.00")]
    ):
        LedgerEntry.objects.create(
            team=where,
            user=who,
            provider="pixazo",
            amount=Decimal(amount),
            kind="charge",
            idempotency_key=f"c{n}",
            explanation="test charge",
        )
    from billing import rollups

    if hasattr(rollups, "rebuild"):
        rollups.rebuild()


def test_managers_see_their_teams_spend_and_members_get_403(
    client, owner, teammate, outsider, team, other_team, charged
):
    response = client.get(f"{API}/spend", **bearer(owner))
    assert response.status_code == 200, response.content
    body = response.json()
    assert Decimal(body["totals"]["real"]) == Decimal("0.50")
    assert [row["label"] for row in body["by_team"]] == ["Studio"]
    problem(client.get(f"{API}/spend", **bearer(teammate)), 403)
    problem(client.get(f"{API}/spend/export.csv", **bearer(teammate)), 403)
    problem(client.get(f"{API}/spend?team={other_team.pk}", **bearer(owner)), 404)
    body = problem(client.get(f"{API}/spend?since=soon", **bearer(owner)), 422)
    assert body["errors"] == ["since: Enter a valid date."]


def test_the_csv_is_the_spend_pages(client, owner_client, owner, charged):
    page = b"".join(owner_client.get("/spend/export.csv").streaming_content)
    response = client.get(f"{API}/spend/export.csv", **bearer(owner))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert b"".join(response.streaming_content) == page
    assert page.count(b"\n") == 3  # the header and Studio's two charges


# --- reuse, fit to budget, idempotency ----------------------------------------------------
def test_the_quote_and_the_create_reuse_a_result_unless_told_not_to(
    client, as_owner, owner, team, make_job, inline_tasks
):
    done = make_job(owner, team)  # the same image, local, scale 2
    sha = hashlib.sha256(image_bytes()).hexdigest()
    size = {"name": "again.png", "width": 96, "height": 80, "bytes": 9, "sha256": sha}
    body = quote(client, as_owner, [size], [{"provider": "local", "options": {"scale": 2}}]).json()
    (line,) = body["lines"]
    assert line["reuse"]["job_id"] == done.pk and line["reuse"]["by"] == "alice"
    assert line["reused"] is True
    fresh = quote(client, as_owner, [size], [{"provider": "local"}], fresh=[line["key"]]).json()
    assert fresh["lines"][0]["reused"] is False
    with inline_tasks():
        reused = create(client, as_owner, upload("again.png")).json()["jobs"][0]
        again = create(client, as_owner, upload("again.png"), reuse="false").json()["jobs"][0]
    assert reused["reused_from"] == done.pk
    assert again["reused_from"] is None


def test_the_quote_says_what_fits_the_budget(client, as_owner, team):
    team.monthly_budget = Decimal("5.00")
    team.save()
    images = [{"name": "a.png", "width": 1000, "height": 800, "bytes": 50_000}]
    body = quote(client, as_owner, images, [{"provider": "local"}]).json()
    fit = body["fit"]
    assert Decimal(fit["left"]) == Decimal("5.00") and fit["sentence"]
    assert {s["provider"] for s in fit["fits"] + fit["sandbox"]} >= {"local"}


def test_a_create_sent_twice_with_one_key_makes_jobs_once(client, as_owner):
    key = {"HTTP_IDEMPOTENCY_KEY": "upload-1"}
    first = client.post(
        f"{API}/jobs", {"provider": "local", "images": [upload()]}, **as_owner, **key
    )
    again = client.post(
        f"{API}/jobs", {"provider": "local", "images": [upload()]}, **as_owner, **key
    )
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true" and again.json() == first.json()
    assert Job.objects.count() == 1


def test_the_list_costs_the_same_queries_for_more_jobs(
    client, owner, team, make_job, django_assert_max_num_queries
):
    auth = bearer(owner)
    make_jobs(owner, team, 2, make_job)
    client.get(f"{API}/jobs", **auth)  # the token's first use notes it (once a minute)
    with django_assert_max_num_queries(12) as few:
        client.get(f"{API}/jobs", **auth)
    make_jobs(owner, team, 6, make_job)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(client.get(f"{API}/jobs", **auth).json()["items"]) == 8


def test_a_job_that_ends_at_once_still_gets_its_webhook_event(client, owner, team, make_job):
    """The token and the URL are stored as the jobs are made: a reused result ends its
    job inside the create, and its event is recorded then."""
    done = make_job(owner, team)
    hook = "https://93.184.216.34/hooks/upscaled"  # a public address, not contacted here
    body = create(client, bearer(owner), upload("again.png"), webhook_url=hook).json()
    (job,) = body["jobs"]
    assert job["reused_from"] == done.pk and job["state"] == "succeeded"
    (event,) = EventDelivery.objects.filter(job_id=job["id"])
    assert (event.event_type, event.url) == ("job.succeeded", hook)
    assert event.token.user == owner
