"""The portal as a user gets it: `manage.py serve` (web + django-q2 cluster) as real
subprocesses, on a database of its own (a temporary SQLite file, or a fresh PostgreSQL
database when DATABASE_URL is set) and the Redis broker when REDIS_URL is set."""

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.databases import fresh_postgres
from upscaler_site.env import derived_secret

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
USER, PASSWORD = "e2e-user", "e2e-password-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fresh_postgres(url: str):
    """Create an empty database beside the one DATABASE_URL names; its URL and a drop."""
    return fresh_postgres(url, "upscaler_e2e")


class Portal:
    def __init__(self, tmp: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        secret = "e2e-" + secrets.token_urlsafe(50)
        self.env = {
            **os.environ,
            # What bin/run sets: development mode (DEBUG, sandboxes on).
            "DEBUG": "true",
            "SECRET_KEY": secret,
            "VAR_DIR": str(tmp),
            "MEDIA_ROOT": str(tmp / "media"),
            "DEMO_USERNAME": USER,
            "DEMO_PASSWORD": PASSWORD,
            "TASK_QUEUE_PREFIX": f"e2e{uuid.uuid4().hex[:8]}",  # its own Redis queues
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{self.port}",
            "SANDBOX_LATENCY": "1.5",
            # Stopped at once when the tests are done (tests/test_watchdog.py tests the grace).
            "CLUSTER_STOP_GRACE_SECONDS": "2",
            # One provider in real mode: a key is set, and the base URL is its own
            # sandbox (which takes that key). Its jobs count against budgets like real
            # spend, so the browser can meet a real over-budget refusal.
            "PIXELCUT_API_KEY": derived_secret(secret, "sandbox-api-key"),
            "PIXELCUT_BASE_URL": f"http://127.0.0.1:{self.port}/sandbox/pixelcut",
            "PYTHONUNBUFFERED": "1",
        }
        self.env.pop("DJANGO_SETTINGS_MODULE", None)
        self.drop_db = None
        if os.environ.get("DATABASE_URL"):
            self.env["DATABASE_URL"], self.drop_db = _fresh_postgres(os.environ["DATABASE_URL"])
        self.log_path = tmp / "portal.log"
        self.proc = None

    def manage(self, *args, check=True, **kwargs):
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            check=check,
            capture_output=True,
            text=True,
            **kwargs,
        )

    def start(self):
        self.manage("migrate", "--noinput")
        self.manage("demo_user")
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "serve", f"127.0.0.1:{self.port}"],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"portal exited:\n{self.log_path.read_text()}")
            try:
                httpx.get(f"{self.url}/accounts/login/", timeout=1)
                return self
            except httpx.TransportError:
                time.sleep(0.2)  # waiting for the server socket, not timing a result
        raise RuntimeError(f"portal did not start:\n{self.log_path.read_text()}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.drop_db:
            self.drop_db()

    def signed_in_client(self) -> httpx.Client:
        client = httpx.Client(base_url=self.url, timeout=30, follow_redirects=False)
        client.get("/accounts/login/")
        client.post(
            "/accounts/login/",
            data={
                "username": USER,
                "password": PASSWORD,
                "csrfmiddlewaretoken": client.cookies["csrftoken"],
            },
            headers={"Referer": self.url},
        )
        assert "sessionid" in client.cookies, "sign-in failed"
        return client


@pytest.fixture(scope="session")
def portal(tmp_path_factory):
    portal = Portal(tmp_path_factory.mktemp("portal")).start()
    yield portal
    portal.stop()


@pytest.fixture(scope="module")  # closed after each module: see pytest_collection_modifyitems
def browser():
    if not CHROMIUM:
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, portal, request):
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, accept_downloads=True, base_url=portal.url
    )
    page = context.new_page()
    yield page
    context.close()


def sign_in(page):
    page.goto("/accounts/login/")
    page.get_by_label("User name").fill(USER)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/")


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sticking_out(page, width: int) -> list[str]:
    """The innermost elements that stick out past `width`: what to fix."""
    return page.evaluate(
        """w => [...document.querySelectorAll("body *")]
            .filter((el) => el.getBoundingClientRect().right > w + 1)
            .filter((el) => ![...el.children].some((c) => c.getBoundingClientRect().right > w + 1))
            .slice(0, 8)
            .map((el) => el.tagName + "." + el.className + " " + el.textContent.slice(0, 40))""",
        width,
    )


def assert_fits(page, width: int = 390) -> None:
    """The page scrolls no wider than the window (a phone's 390 px by default)."""
    scroll = page.evaluate("document.documentElement.scrollWidth")
    wide = sticking_out(page, width) if scroll > width else []
    assert scroll <= width, f"{page.url} is {scroll} px wide at {width}: {wide}"


def leave_team(portal, team_id: int) -> None:
    """Take the e2e user out of a team a test made for itself, so the browser tests after
    it see only the user's own team (the upload page may otherwise open on that one)."""
    portal.manage(
        "shell",
        "-c",
        "from billing.models import Membership; Membership.objects.filter("
        f"team_id={int(team_id)}, user__username={USER!r}).delete()",
    )
