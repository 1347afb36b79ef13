"""Every kind of page answers with a strict Content-Security-Policy, and carries nothing
that policy would block: no inline script or style, no htmx expression that needs eval.
(The browser test in tests/e2e/test_security_browser.py watches the same pages live.)"""

from decimal import Decimal
from html.parser import HTMLParser

import pytest
from django.contrib.auth import get_user_model

from jobs.models import Job

UNSAFE = {"'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'", "*"}


def policy(response) -> dict[str, list[str]]:
    header = response.headers.get("Content-Security-Policy", "")
    assert header, f"{response.request['PATH_INFO']} answered without a CSP header"
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


class InlineFinder(HTMLParser):
    """What a strict CSP refuses in a page: style="" and on*="" attributes, inline <script>
    and <style>, javascript: URLs, and the htmx features that go through eval (trigger
    filters, hx-on, hx-vars, js: values)."""

    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        attrs = {name: value or "" for name, value in attrs}
        for name, value in attrs.items():
            if self.blocked(name, value.strip()):
                self.found.append(f"<{tag} {name}={value!r}>")
        if tag == "style":
            self.found.append("<style> element")
        # Data blocks (json_script) are not run, so the policy does not apply to them.
        if tag == "script" and "src" not in attrs and attrs.get("type") != "application/json":
            self.found.append("inline <script>")

    @staticmethod
    def blocked(name: str, value: str) -> bool:
        return (
            name == "style"
            or (name.startswith("on") and name.isalpha())
            or name.startswith(("hx-on", "data-hx-on"))
            or name in ("hx-vars", "data-hx-vars")
            or (name in ("hx-vals", "hx-headers") and value.startswith("js:"))
            or (name in ("hx-trigger", "data-hx-trigger") and "[" in value)
            or value.lower().startswith("javascript:")
        )


def blocked_by_policy(html: str) -> list[str]:
    finder = InlineFinder()
    finder.feed(html)
    return finder.found


STATUS = {"not found": 404, "locked out": 429}


@pytest.fixture
def visit(client, make_job, owner, team):
    """visit(name) -> the response to that kind of page, set up only when asked for."""

    def as_member(url):
        client.force_login(owner)
        return client.get(url)

    def as_staff(url):
        staff = get_user_model().objects.create_superuser("root", "root@x.example", "pw-12345")
        client.force_login(staff)
        return client.get(url)

    def running():
        job = make_job(owner, team, name="running.png", run=False)
        assert Job.objects.get(pk=job.pk).is_active
        return job

    def with_budget():  # the page then draws the team's budget bar
        team.monthly_budget = Decimal("100.00")
        team.save()

    def locked_out():
        for _ in range(5):
            client.post("/accounts/login/", {"username": owner.username, "password": "wrong"})
        return client.post("/accounts/login/", {"username": owner.username, "password": "pw-12345"})

    routes = {
        "sign-in": lambda: client.get("/accounts/login/"),
        "upload": lambda: as_member("/"),
        "preview": lambda: as_member("/upload/preview/?size=a.png|100|80|999&provider=local"),
        "history": lambda: (make_job(owner, team), as_member("/jobs/"))[1],
        "running job": lambda: as_member(f"/jobs/{running().pk}/"),
        "running row": lambda: as_member(f"/jobs/{running().pk}/row/"),
        "finished job": lambda: as_member(f"/jobs/{make_job(owner, team).pk}/"),
        "compare": lambda: as_member(f"/jobs/batch/{running().batch}/compare/"),
        "providers": lambda: as_member("/providers/"),
        "spend": lambda: (with_budget(), as_member("/spend/"))[1],
        "admin sign-in": lambda: client.get("/admin/login/"),
        "admin index": lambda: as_staff("/admin/"),
        "admin job": lambda: as_staff(f"/admin/jobs/job/{make_job(owner, team).pk}/change/"),
        "not found": lambda: as_member("/no-such-page/"),
        "locked out": locked_out,
    }

    def go(name):
        response = routes[name]()
        assert response.status_code == STATUS.get(name, 200), (name, response.status_code)
        return response

    return go


PAGE_NAMES = [
    "sign-in",
    "upload",
    "preview",
    "history",
    "running job",
    "running row",
    "finished job",
    "compare",
    "providers",
    "spend",
    "admin sign-in",
    "admin index",
    "admin job",
    "not found",
    "locked out",
]


@pytest.mark.parametrize("name", PAGE_NAMES)
def test_every_kind_of_page_answers_with_a_strict_policy(visit, name):
    directives = policy(visit(name))
    for directive in ("default-src", "script-src", "style-src"):
        assert directives[directive] == ["'self'"], (directive, directives[directive])
    for values in directives.values():
        assert not set(values) & UNSAFE, values
    assert directives["object-src"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]


@pytest.mark.parametrize("name", PAGE_NAMES)
def test_no_page_carries_anything_the_policy_would_block(visit, name):
    html = visit(name).content.decode()
    assert blocked_by_policy(html) == []


def test_the_finder_sees_what_the_policy_blocks():
    page = """<div style="width: 3px"></div><a href="javascript:go()">x</a>
      <button onclick="go()">x</button><div hx-trigger="every 2s [ok()]"></div>
      <div hx-on:click="go()"></div><div hx-vals='js:{a: 1}'></div>
      <style>p {}</style><script>go()</script><script src="/static/ok.js"></script>
      <script type="application/json">{"ok": 1}</script>"""
    assert len(blocked_by_policy(page)) == 8
