"""Nothing on our pages breaks the Content-Security-Policy: Chromium walks every page a
user meets, at a desktop and a phone size, and every violation it reports fails the test.
Screenshots of each page land in test-artifacts/csp-*.png."""

import re
import subprocess
import sys
import time
import uuid

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ROOT, free_port, shot, sign_in
from tests.images import image_bytes

pytestmark = pytest.mark.e2e

VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
SLOW = 12  # seconds the fal sandbox takes, so its job is seen running, then finishing

# Runs in every document before the page's own scripts. Playwright adds it through the
# DevTools protocol, which the page's CSP does not govern (the self-test below proves the
# watcher still sees violations under our policy).
WATCHER = """
window.__cspSeen = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspSeen.push(
    `${e.effectiveDirective} refused ${e.blockedURI || "inline"}` +
    ` at ${e.sourceFile || location.pathname}:${e.lineNumber} ${e.sample || ""}`);
}, true);
"""


class Watched:
    """A signed-out browser tab that records what the CSP refused, page by page."""

    def __init__(self, context, viewport: str):
        self.viewport = viewport
        self.page = context.new_page()
        self.console = []
        self.page.on("console", self._console)
        self.violations = {}

    def _console(self, message):
        if "Content Security Policy" in message.text:
            self.console.append(message.text)

    def check(self, name: str):
        """Record what was refused on the page now shown, and keep a picture of it."""
        shot(self.page, f"csp-{self.viewport}-{name}")
        seen = self.page.evaluate("() => window.__cspSeen || []") + self.console
        self.console = []
        if seen:
            self.violations[name] = seen


@pytest.fixture(params=list(VIEWPORTS))
def watched(browser, portal, request):
    context = browser.new_context(viewport=VIEWPORTS[request.param], base_url=portal.url)
    context.add_init_script(WATCHER)
    yield Watched(context, request.param)
    context.close()


@pytest.fixture
def slow_fal(portal):
    """slow_fal(seconds): the fal sandbox takes that long per task, until the test ends."""

    def set_latency(seconds=None):
        value = "" if seconds is None else f"latency={seconds}"
        portal.manage(
            "shell", "-c", f"from jobs.sandbox.engine import set_faults; set_faults('fal', {value})"
        )

    yield set_latency
    set_latency(None)


def poll_answered(page, pattern: str):
    """Wait for the page's own htmx polling to fetch `pattern` and get an answer."""
    with page.expect_response(re.compile(pattern), timeout=10_000) as answer:
        pass
    assert answer.value.ok


def job_id(row) -> int:
    return int(row.get_attribute("id").removeprefix("job-"))


def test_the_watcher_sees_a_violation_caused_on_purpose(browser, portal):
    context = browser.new_context(base_url=portal.url)
    context.add_init_script(WATCHER)
    try:
        watched = Watched(context, "selftest")
        watched.page.goto("/accounts/login/")
        watched.page.evaluate(
            "() => { const s = document.createElement('style');"
            " s.textContent = 'body { color: red }'; document.head.append(s); }"
        )
        watched.page.wait_for_function("() => window.__cspSeen.length > 0")
        watched.check("selftest")
        assert "style-src-elem refused inline" in watched.violations["selftest"][0]
    finally:
        context.close()


def test_no_page_breaks_the_content_security_policy(watched, portal, slow_fal):
    page = watched.page
    tag = uuid.uuid4().hex[:8]
    page.goto("/accounts/login/")
    watched.check("sign-in")
    sign_in(page)

    # Upload, with a file chosen so the preview renders, then a batch of two providers:
    # local finishes at once, fal (a sandbox made slow) is still running for a while.
    name = f"csp-{tag}.png"
    page.set_input_files(
        "#images",
        # Unique: fal must really run (slowly), not reuse the other viewport's result.
        [{"name": name, "mimeType": "image/png", "buffer": image_bytes(120, 90, unique=True)}],
    )
    page.locator('input[name="provider"][value="fal"]').check()
    expect(page.locator('#preview tr[data-provider="fal"]')).to_contain_text(name)
    watched.check("upload")
    slow_fal(SLOW)
    page.get_by_role("button", name="Upscale").click()
    expect(page.locator("#outcome .alert.ok")).to_contain_text("2 jobs queued")
    rows = page.locator("#outcome tr.job-row")
    local = job_id(rows.filter(has_text="Local"))
    fal = job_id(rows.filter(has_text="fal.ai"))
    compare = page.get_by_role("link", name="compare the providers side by side")
    compare_url = compare.get_attribute("href")
    poll_answered(page, rf"/jobs/{fal}/row/$")
    watched.check("upload-submitted")

    page.goto(compare_url)
    expect(page.locator("#compare")).to_have_attribute("hx-trigger", re.compile(r"^every 2s"))
    poll_answered(page, r"/compare/$")
    watched.check("compare-running")

    page.goto(f"/jobs/{fal}/")
    expect(page.locator("#live")).to_have_attribute("hx-trigger", re.compile(r"^every 2s"))
    poll_answered(page, rf"/jobs/{fal}/$")
    watched.check("job-running")
    # The page updates itself when the job ends: the slider comes in by an htmx swap.
    slider = page.locator("img-comparison-slider.rendered")
    expect(slider).to_be_visible(timeout=60_000)
    expect(page.locator("#live")).not_to_have_attribute("hx-trigger", re.compile("."))
    # Shown no wider than the result (but at least 480 px): a size set without style="".
    widths = [slider.evaluate("el => getComputedStyle(el).maxWidth")]
    watched.check("job-succeeded-live")

    page.goto(f"/jobs/{local}/")
    slider = page.locator("img-comparison-slider.rendered")
    expect(slider).to_be_visible()
    page.wait_for_function(
        "() => [...document.querySelectorAll('img-comparison-slider img')]"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )
    widths.append(slider.evaluate("el => getComputedStyle(el).maxWidth"))
    watched.check("job-succeeded")

    page.goto(compare_url)
    expect(page.locator(f"#tile-{fal} img")).to_be_visible()
    watched.check("compare")

    page.goto(f"/jobs/?q={tag}")
    expect(page.locator("tr.job-row")).to_have_count(2)
    watched.check("history")

    page.goto("/providers/")
    watched.check("providers")

    team = portal.manage("shell", "-c", SPEND_SEED.format(tag=tag)).stdout.split()[-1]
    page.goto("/spend/")
    expect(page.locator(f"#budget-{team} .meter")).to_be_visible()
    page.wait_for_function(
        "() => window.Chart && window.Chart.getChart(document.getElementById('spend-chart'))"
    )
    watched.check("spend")

    page.goto("/admin/")
    watched.check("admin-index")
    page.goto(f"/admin/jobs/job/{local}/change/")
    watched.check("admin-job")

    assert watched.violations == {}
    assert widths == ["480px", "480px"]


# Headless Chromium keeps every tab visible: make this document say it is hidden, as a
# background tab's does, and count the polls htmx starts and the ones portal.js skips.
HIDE = """() => {
  Object.defineProperty(document, "hidden", {configurable: true, get: () => true});
  Object.defineProperty(document, "visibilityState", {configurable: true, get: () => "hidden"});
  window.__polls = {sent: 0, skipped: 0};
  window.addEventListener("htmx:beforeRequest", (e) => {
    window.__polls[e.defaultPrevented ? "skipped" : "sent"] += 1;
  });
}"""
SHOW = "() => { delete document.hidden; delete document.visibilityState; }"


def test_live_parts_poll_only_while_the_tab_is_visible(page, slow_fal):
    sign_in(page)
    name = f"hidden-{uuid.uuid4().hex[:8]}.png"
    page.set_input_files(
        "#images",
        [{"name": name, "mimeType": "image/png", "buffer": image_bytes(100, 80, unique=True)}],
    )
    page.locator('input[name="provider"][value="local"]').uncheck()
    page.locator('input[name="provider"][value="fal"]').check()
    slow_fal(30)
    page.get_by_role("button", name="Upscale").click()
    expect(page.locator("#outcome .alert.ok")).to_contain_text("1 job queued")
    job = job_id(page.locator("#outcome tr.job-row"))
    page.goto(f"/jobs/{job}/")
    poll_answered(page, rf"/jobs/{job}/$")  # visible: it polls

    page.evaluate(HIDE)
    page.wait_for_function("() => window.__polls.skipped >= 1")
    sent = []
    page.on("request", lambda r: sent.append(r.url) if f"/jobs/{job}/" in r.url else None)
    page.wait_for_function("() => window.__polls.skipped >= 3", timeout=15_000)
    assert page.evaluate("() => window.__polls.sent") == 0
    assert sent == []
    expect(page.locator("#live")).to_have_attribute("hx-trigger", "every 2s")  # still live

    page.evaluate(SHOW)
    poll_answered(page, rf"/jobs/{job}/$")  # shown again: polling picks up by itself


# A team of its own with a budget half used, so the spend page draws a budget bar and the
# chart without moving any other test's figures (the e2e user is staff and sees all teams).
SPEND_SEED = """
from decimal import Decimal
from django.contrib.auth import get_user_model
from billing.models import LedgerEntry, Team
team = Team.objects.create(name="csp-{tag}", monthly_budget=Decimal("1.00"))
LedgerEntry.objects.create(
    team=team, user=get_user_model().objects.get(username="e2e-user"), kind="charge",
    provider="apixo", amount=Decimal("0.50"), explanation="seeded for the CSP test",
    idempotency_key="e2e-csp-{tag}",
)
print(team.pk)
"""


@pytest.fixture(scope="module")
def production_web(portal, tmp_path_factory, collected_static):
    """The same portal's web side in production mode (DEBUG off), for what only production
    shows: the branded error pages. Served as in production, by gunicorn with its checked-in
    config and the static files the release step collected (whitenoise); plain http on
    loopback, so the HTTPS settings are switched off."""
    port = free_port()
    env = {
        **portal.env,
        "DEBUG": "false",
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        "SECURE_HSTS_SECONDS": "0",
        "STATIC_ROOT": str(collected_static),
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
    }
    log = (tmp_path_factory.mktemp("production") / "web.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "upscaler_site.wsgi"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, "the production web server exited"
            try:
                httpx.get(f"{url}/accounts/login/", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the production web server did not start"
                time.sleep(0.2)  # waiting for the server socket, not timing a result
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def test_the_error_pages_keep_the_policy_and_the_look(watched, production_web):
    page = watched.page
    response = page.goto(f"{production_web}/no-such-page/")
    assert response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")
    # The portal's stylesheet applied (the top bar's dark background), not a bare page.
    bar = page.locator(".topbar").evaluate("el => getComputedStyle(el).backgroundColor")
    assert bar == "rgb(17, 24, 39)"
    watched.check("404")

    sign_in(page)  # on the portal: the session cookie is the same for both
    response = page.goto(f"{production_web}/jobs/999999999/")
    assert response.status == 404
    expect(page.get_by_role("link", name=re.compile("home", re.I))).to_be_visible()
    watched.check("404-signed-in")

    assert watched.violations == {}
