"""`--scale`: seed the big database, then time pages as a browser behind a TLS proxy."""

import html
import math
import re
import tempfile
import time
from pathlib import Path
from urllib.parse import urljoin

import httpx

from benchmarks.stack import Machine, Stack, load_average

PAGE, FRAGMENT, SPEND = 0.100, 0.050, 0.300  # the goals, in seconds
WARM_UP = 2  # requests per page before the timed ones (templates, connections, caches)


class Browser:
    """One signed-in person. Sends what a TLS-terminating proxy adds (X-Forwarded-Proto),
    so the production settings apply as they are; keeps cookies itself, since they are
    Secure and this connection is plain http."""

    def __init__(self, base: str):
        self.base = base
        self.https = base.replace("http://", "https://")
        self.http = httpx.Client(base_url=base, timeout=600, headers={"X-Forwarded-Proto": "https"})
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {**kwargs.pop("headers", {}), "Cookie": self.cookie_header()}
        response = self.http.request(method, path, headers=headers, **kwargs)
        self.keep(response)
        return response

    def get(self, path: str, **headers) -> httpx.Response:
        return self.request("GET", path, headers=headers)

    def cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    def keep(self, response: httpx.Response) -> None:
        for line in response.headers.get_list("set-cookie"):
            name, _, value = line.split(";", 1)[0].partition("=")
            self.cookies[name.strip()] = value.strip()

    def sign_in(self, username: str, password: str) -> "Browser":
        """Once per person: sign-in throttling (axes) is on."""
        page = self.get("/accounts/login/").text
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        answer = self.request(
            "POST",
            "/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": token},
            headers={"Origin": self.https, "Referer": f"{self.https}/accounts/login/"},
        )
        if answer.status_code != 302:
            raise SystemExit(f"signing in as {username} failed ({answer.status_code})")
        return self


def timed(browser: Browser, paths: list[str], count: int, headers: dict) -> dict:
    """p50/p95 of `count` GETs cycling over `paths`, after a warm-up."""
    for path in paths[:WARM_UP] if len(paths) > 1 else paths * WARM_UP:
        browser.get(path, **headers)
    return timed_calls(lambda i: browser.get(paths[i % len(paths)], **headers), count)


def timed_calls(send, count: int, first: int = 0) -> dict:
    """p50/p95 of `count` calls of send(i) -> response (i from `first`), and what came back."""
    times, statuses, size = [], set(), 0
    for i in range(first, first + count):
        start = time.perf_counter()
        response = send(i)
        times.append(time.perf_counter() - start)
        statuses.add(response.status_code)
        size = max(size, len(response.content))
    return {
        "p50": percentile(times, 0.5),
        "p95": percentile(times, 0.95),
        "statuses": sorted(statuses),
        "bytes": size,
    }


def percentile(values: list[float], p: float) -> float:
    """Nearest rank: of 20 values, p95 is the 19th."""
    values = sorted(values)
    return values[max(0, math.ceil(p * len(values)) - 1)]


def deep_page(browser: Browser, first: str, hops: int) -> tuple[str, str]:
    """The history page `hops` pages older than `first`: by its number when the pager
    numbers pages, else by following its "Older" link (cursor pagination)."""
    page, path = browser.get(first).text, first
    older = older_link(page, first)
    if older and re.search(r"[?&]page=2(&|$)", older):
        return re.sub(r"([?&])page=2(&|$)", rf"\g<1>page={hops + 1}\2", older), "?page=N"
    start = time.monotonic()
    for hop in range(hops):
        older = older_link(page, path)
        if not older:
            return path, f"only {hop} older pages"
        path, page = older, browser.get(older).text
    return path, f'followed "Older" {hops} times ({time.monotonic() - start:.0f} s)'


def older_link(page: str, here: str) -> str:
    """The page's link to older jobs (its "Older" or rel="next" link), as a path."""
    for tag, text in re.findall(r"(<a\b[^>]*>)(.*?)</a>", page, re.S | re.I):
        if re.search(r"older|next", text, re.I) or 'rel="next"' in tag:
            href = re.search(r'href="([^"]*)"', tag)
            if href:
                return urljoin(here, html.unescape(href.group(1)))
    return ""


def measure_server(stack: Stack, server: str, facts: dict, count: int, csv: bool) -> dict:
    stack.start_web(server)
    try:
        staff = Browser(stack.base).sign_in(facts["staff"], facts["password"])
        manager = Browser(stack.base).sign_in(facts["manager"], facts["password"])
        days = f"since={facts['since']}&until={facts['until']}"
        year = f"since={facts['year_since']}&until={facts['until']}"
        deep, how = deep_page(staff, "/jobs/", 499)
        hx = {"HX-Request": "true"}
        rows = [
            ("History first page, all teams", "staff", staff, ["/jobs/"], {}, PAGE),
            ("History, one team", "manager", manager, ["/jobs/"], {}, PAGE),
            ("History, search by name", "staff", staff, [f"/jobs/?q={facts['search']}"], {}, PAGE),
            (f"History page 500 ({how})", "staff", staff, [deep], {}, PAGE),
            ("Job page", "staff", staff, [f"/jobs/{pk}/" for pk in facts["job_pages"]], {}, PAGE),
            ("Upload page", "staff", staff, ["/"], {}, PAGE),
            ("Spend, this month", "staff", staff, ["/spend/"], {}, SPEND),
            ("Spend, 90 days", "staff", staff, [f"/spend/?{days}"], {}, SPEND),
            ("Spend, a year", "staff", staff, [f"/spend/?{year}"], {}, SPEND),
            ("Spend, this month", "manager", manager, ["/spend/"], {}, SPEND),
            ("Spend, a year", "manager", manager, [f"/spend/?{year}"], {}, SPEND),
            (
                "Spend, one team, 90 days",
                "manager",
                manager,
                [f"/spend/?{days}&team={facts['team']}"],
                {},
                SPEND,
            ),
            (
                "Row fragment",
                "staff",
                staff,
                [f"/jobs/{pk}/row/" for pk in facts["fragments"]],
                hx,
                FRAGMENT,
            ),
            (
                "Live fragment (job page)",
                "staff",
                staff,
                [f"/jobs/{pk}/" for pk in facts["fragments"]],
                {**hx, "HX-Target": "live"},
                FRAGMENT,
            ),
        ]
        table = []
        for label, who, browser, paths, headers, goal in rows:
            table.append(
                {"page": label, "as": who, "goal": goal, **timed(browser, paths, count, headers)}
            )
        from benchmarks import api  # here: it imports this module's figures

        table += api.rows(stack.base, facts, count)
        export = csv_export(staff, f"/spend/export.csv?{days}&include_sandbox=on") if csv else None
        return {"table": table, "csv": export}
    finally:
        stack.stop("web")


def csv_export(browser: Browser, path: str) -> dict:
    start = time.perf_counter()
    first, lines, size, status = None, 0, 0, None
    with browser.http.stream("GET", path, headers={"Cookie": browser.cookie_header()}) as answer:
        status = answer.status_code
        try:
            for chunk in answer.iter_bytes():
                first = first or time.perf_counter() - start
                lines += chunk.count(b"\n")
                size += len(chunk)
        except httpx.HTTPError as exc:  # a cut stream, reported as such
            status = f"{status}, then {type(exc).__name__}"
    return {
        "status": status,
        "rows": max(lines - 1, 0),
        "bytes": size,
        "first_byte": first,
        "seconds": time.perf_counter() - start,
    }


def run(args) -> None:
    with tempfile.TemporaryDirectory(prefix="upscaler-bench-") as tmp:
        stack = Stack(Path(tmp), args.name_prefix)
        try:
            print(
                f"Database: {'PostgreSQL' if stack.db_url.startswith('postgres') else 'SQLite'}"
                f"; load average before: {load_average()}",
                flush=True,
            )
            start = time.monotonic()
            stack.manage("migrate", "--noinput")
            stack.manage("collectstatic", "--noinput")
            print(f"migrate + collectstatic: {time.monotonic() - start:.1f} s", flush=True)
            machine = Machine()
            seeded = stack.inside("seed", jobs=args.scale_jobs, ledger_rows=args.ledger_rows)
            print(
                f"\nSeeded in {seeded['took']['total']:.1f} s "
                f"(machine: {machine.busy():.1f} of {machine.cores} cores busy):"
            )
            for step, seconds in seeded["took"].items():
                if step != "total":
                    print(f"  {step:<34} {seconds:6.1f} s")
            print(f"  rollups: {seeded['rollups']}")
            facts = stack.inside("pick", days=90)
            print(
                f"  {facts['jobs']:,} jobs, {facts['ledger']:,} ledger rows; "
                f"{facts['search_hits']:,} names contain {facts['search']!r}; this month "
                f"has {facts['month_rows']:,} charge rows; the 90-day export "
                f"{facts['csv_rows']:,} rows",
                flush=True,
            )
            for n, server in enumerate(args.server.split(",")):
                machine = Machine()
                result = measure_server(stack, server, facts, args.requests, csv=n == 0)
                report(server, result, facts, args.requests, machine)
        finally:
            stack.close(args.keep_logs)


def report(server: str, result: dict, facts: dict, count: int, machine: Machine) -> None:
    print(
        f"\n{server}, {count} requests per page after {WARM_UP} warm-up ones, one at a time "
        f"(machine: {machine.busy():.1f} of {machine.cores} cores busy, "
        f"load average {load_average()}):\n"
    )
    print("| page | as | p50 | p95 | goal | status, size |")
    print("|---|---|---|---|---|---|")
    for row in result["table"]:
        over = " (over)" if row["p95"] > row["goal"] else ""
        statuses = "/".join(map(str, row["statuses"]))
        print(
            f"| {row['page']} | {row['as']} | {row['p50'] * 1000:.0f} ms | "
            f"{row['p95'] * 1000:.0f} ms{over} | {row['goal'] * 1000:.0f} ms | "
            f"{statuses}, {row['bytes'] / 1024:.0f} KB |"
        )
    export = result["csv"]
    if export:
        complete = (
            "complete"
            if export["rows"] == facts["csv_rows"]
            else (f"CUT: {export['rows']:,} of {facts['csv_rows']:,} rows")
        )
        print(
            f"\nCSV export, 90 days incl. sandbox ({server}): {export['rows']:,} rows, "
            f"{export['bytes'] / 1e6:.0f} MB in {export['seconds']:.1f} s "
            f"({export['rows'] / max(export['seconds'], 1e-9):,.0f} rows/s; first byte after "
            f"{(export['first_byte'] or 0) * 1000:.0f} ms), HTTP {export['status']}, {complete}"
        )
