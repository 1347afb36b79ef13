"""The production set, started the way the README's "Running in production" says: the
Procfile's release step, then its three processes (gunicorn with gunicorn.conf.py, the
supervised cluster, the tracker), DEBUG unset, with only the documented environment.

Requests come as from the TLS-terminating proxy the README describes (the public host
name, `X-Forwarded-Proto: https`, `X-Forwarded-For`), so the real production defaults
stay on: HTTPS redirect, secure cookies, HSTS, CSP. Timings are printed (-s shows them)."""

import csv
import io
import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import time
import uuid
from http.cookies import SimpleCookie
from pathlib import Path

import httpx
import pytest
from django.core import signing
from PIL import Image

from jobs.inbound import INPUT_SALT
from tests.e2e.conftest import ROOT, _fresh_postgres, free_port, shot
from tests.e2e.harness import wait_for
from tests.images import image_bytes

pytestmark = pytest.mark.e2e

HOST = "upscaler.test"
PROXY = {"Host": HOST, "X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
USER, PASSWORD = "prod-e2e", "prod-e2e-password-1"
# gunicorn kills a worker silent for this long; the CSV export below must take longer.
TIMEOUT = 4
FIRST_ROWS = 30_000  # ledger rows seeded for the first export; doubled until it is slow
MIN_ROWS = 200_000  # and until the export has at least this many (issue #10)
FAR_FUTURE = "max-age=315360000, public, immutable"


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip() and not line.startswith("#"))


class ProductionSet:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        venv_bin = str(Path(sys.executable).parent)  # `gunicorn` and `python` of this install
        self.env = {
            "PATH": f"{venv_bin}:{os.environ['PATH']}",
            "HOME": os.environ.get("HOME", str(tmp)),
            "PYTHONUNBUFFERED": "1",
            # The README's production environment (nothing else: DEBUG stays unset).
            "SECRET_KEY": secrets.token_urlsafe(50),
            "PUBLIC_BASE_URL": f"https://{HOST}",
            # The host name the proxy passes on; the address for a browser on this machine.
            "ALLOWED_HOSTS": f"{HOST},127.0.0.1",
            "CONN_MAX_AGE": "60",
            "WEB_CONCURRENCY": "2",
            "LOG_FORMAT": "json",
            # This machine's: where files go, where to listen, a queue of its own.
            "VAR_DIR": str(tmp),
            "BIND": f"127.0.0.1:{self.port}",
            "TASK_QUEUE_PREFIX": f"prod{uuid.uuid4().hex[:8]}",
            "GUNICORN_TIMEOUT": str(TIMEOUT),
            # The test stops the set at once when it is done (graceful stops have tests
            # of their own, tests/test_watchdog.py): no 15-30 s waits in the teardown.
            "GUNICORN_GRACEFUL_TIMEOUT": "2",
            "CLUSTER_STOP_GRACE_SECONDS": "2",
            "DEMO_USERNAME": USER,
            "DEMO_PASSWORD": PASSWORD,
            # The start-up self-check would look up the made-up public host name in DNS,
            # off this machine; tests/e2e/test_gunicorn_self_check.py tests it on loopback.
            "SELF_CHECK": "off",
        }
        self.drop_db = None
        if os.environ.get("DATABASE_URL"):
            self.env["DATABASE_URL"], self.drop_db = _fresh_postgres(os.environ["DATABASE_URL"])
        if os.environ.get("REDIS_URL"):
            self.env["REDIS_URL"] = os.environ["REDIS_URL"]
        self.procs: dict[str, subprocess.Popen] = {}
        self.timings: dict[str, float] = {}

    def run(self, command: str, timeout=600) -> subprocess.CompletedProcess:
        return subprocess.run(
            command,
            shell=True,
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )

    def start(self):
        processes = procfile()
        assert set(processes) == {"release", "web", "worker", "tracker"}
        started = time.monotonic()
        self.run(processes["release"])
        self.timings["release step"] = time.monotonic() - started
        self.run("python manage.py demo_user")
        started = time.monotonic()
        for name in ("web", "worker", "tracker"):
            self.procs[name] = subprocess.Popen(
                shlex.split(processes[name]),
                cwd=ROOT,
                env=self.env,
                stdout=(self.tmp / f"{name}.log").open("w"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(lambda: self.answers("/healthz/live"), 60, self.failed("the web never answered"))
        self.timings["web boot"] = time.monotonic() - started
        # /healthz: database, broker, storage, the tracker's and the cluster's heartbeats.
        wait_for(lambda: self.answers("/healthz"), 60, self.failed("/healthz never passed"))
        self.timings["all three up (/healthz ok)"] = time.monotonic() - started
        return self

    def answers(self, path: str) -> bool:
        for name, proc in self.procs.items():
            assert proc.poll() is None, self.failed(f"{name} exited")
        try:
            # A load balancer probes the node by address, over plain http.
            return httpx.get(self.url + path, timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text()

    def failed(self, what: str) -> str:
        logs = "\n".join(f"--- {n}\n{self.log(n)[-3000:]}" for n in self.procs)
        return f"{what}\n{logs}"

    def stop(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self.drop_db:
            self.drop_db()


class Visitor:
    """A browser behind the proxy, spoken with httpx. Cookies are kept by hand: they are
    Secure (production), and a cookie jar would not send them over the proxy's plain-http
    hop."""

    def __init__(self, url: str):
        self.http = httpx.Client(base_url=url, timeout=60, headers=PROXY)
        self.cookies: dict[str, object] = {}

    def request(self, method: str, path: str, headers=None, **kwargs) -> httpx.Response:
        response = self.http.request(method, path, headers=self.headers(headers), **kwargs)
        self._keep(response)
        return response

    def get(self, path: str, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs):
        headers = {"Origin": f"https://{HOST}", **kwargs.pop("headers", {})}
        data = {"csrfmiddlewaretoken": self.cookies["csrftoken"].value, **kwargs.pop("data", {})}
        return self.request("POST", path, headers=headers, data=data, **kwargs)

    def headers(self, extra=None) -> dict:
        cookie = "; ".join(f"{k}={m.value}" for k, m in self.cookies.items())
        return {**(extra or {}), **({"Cookie": cookie} if cookie else {})}

    def _keep(self, response: httpx.Response):
        self.http.cookies.clear()
        for header in response.headers.get_list("set-cookie"):
            jar = SimpleCookie()
            jar.load(header)
            self.cookies.update(jar)


def json_lines(text: str) -> list[dict]:
    found = []
    for line in text.splitlines():
        if line.strip():
            found.append(json.loads(line))  # every line, from every logger, is JSON
    return found


SEED = """
from decimal import Decimal
from django.contrib.auth import get_user_model
from billing.models import LedgerEntry, Team
team, _ = Team.objects.get_or_create(name="stream-{tag}")
user = get_user_model().objects.get(username="{user}")
LedgerEntry.objects.bulk_create(
    (LedgerEntry(team=team, user=user, kind="charge", provider="apixo",
                 amount=Decimal("0.0100"), explanation="seeded row " + str(i),
                 idempotency_key="stream-{tag}-" + str(i))
     for i in range({start}, {end})),
    batch_size=5000,
)
print(team.pk)
"""


@pytest.fixture(scope="module")
def production(tmp_path_factory):
    stack = ProductionSet(tmp_path_factory.mktemp("production"))
    try:
        yield stack.start()
    finally:
        stack.stop()
        timings = ", ".join(f"{k} {v:.1f} s" for k, v in stack.timings.items())
        print(f"\nproduction timings: {timings}")


def test_the_production_set_serves_the_portal(production):
    visitor = Visitor(production.url)

    # Plain http straight to the node is sent to https (the production default).
    plain = httpx.get(f"{production.url}/accounts/login/", headers={"Host": HOST})
    assert plain.status_code == 301
    assert plain.headers["location"] == f"https://{HOST}/accounts/login/"

    # The sign-in page, its policy, and its stylesheet from whitenoise: hashed name,
    # compressed, cached for ever.
    login = visitor.get("/accounts/login/")
    assert login.status_code == 200
    assert "default-src 'self'" in login.headers["content-security-policy"]
    assert login.headers["strict-transport-security"].startswith("max-age=31536000")
    css = re.search(r'href="(/static/jobs/portal\.[0-9a-f]{12}\.css)"', login.text)
    assert css, login.text
    style = visitor.get(css.group(1), headers={"Accept-Encoding": "br"})
    assert style.status_code == 200
    assert style.headers["cache-control"] == FAR_FUTURE
    assert style.headers["content-encoding"] == "br"
    assert style.headers["content-type"].startswith("text/css")
    assert ".topbar" in style.text

    # Sign in (django-axes is on; the demo user came from `manage.py demo_user`).
    signed = visitor.post("/accounts/login/", data={"username": USER, "password": PASSWORD})
    assert signed.status_code == 302, signed.text
    assert visitor.cookies["sessionid"]["secure"] and visitor.cookies["sessionid"]["httponly"]

    # An upload with the local provider (the sandboxes are off) goes to `succeeded`.
    visitor.get("/")
    started = time.monotonic()
    upload = visitor.post(
        "/",
        data={"provider": "local", "local-scale": "2"},
        files={"images": ("cat.png", image_bytes(120, 80, unique=True), "image/png")},
        headers={"HX-Request": "true"},
    )
    assert upload.status_code == 201, upload.text
    job_id = int(re.search(r'id="job-(\d+)"', upload.text).group(1))

    def job_state():
        row = visitor.get(f"/jobs/{job_id}/row/").text
        state = re.search(r'class="job-row state-(\w+)"', row).group(1)
        return state if state in ("succeeded", "failed", "canceled") else None

    assert wait_for(job_state, 90, production.failed(f"job {job_id} never ended")) == "succeeded"
    production.timings["job upload to succeeded"] = time.monotonic() - started
    result = visitor.get(f"/jobs/{job_id}/download/")
    assert result.status_code == 200
    assert Image.open(io.BytesIO(result.content)).size == (240, 160)

    # Our tokens reach the access log masked (gunicorn's line, below).
    input_token = signing.dumps({"j": job_id, "p": "fal"}, salt=INPUT_SALT, compress=True)
    hook_token = secrets.token_urlsafe(24)
    assert visitor.get(f"/inputs/{input_token}/?sig=query-secret").status_code == 404
    hook = visitor.request("POST", f"/hooks/local/{job_id}/{hook_token}/", json={})
    assert hook.status_code in (400, 403, 404)

    # A CSV export of 200k rows, streaming for longer than gunicorn's worker timeout,
    # arrives whole. How long an export takes depends on the machine: rows are added
    # until one has MIN_ROWS and took longer than the timeout (each export on the way
    # must be whole too).
    tag, seeded, streamed = uuid.uuid4().hex[:8], 0, 0.0
    while streamed <= TIMEOUT or seeded < MIN_ROWS:
        assert seeded < 2_000_000, f"{seeded} rows still streamed in {streamed:.1f} s"
        more = max(FIRST_ROWS, seeded)
        seed = SEED.format(tag=tag, user=USER, start=seeded, end=seeded + more)
        team = production.run(f"python manage.py shell -c {shlex.quote(seed)}").stdout.split()[-1]
        seeded += more
        started = time.monotonic()
        with visitor.http.stream(
            "GET", f"/spend/export.csv?team={team}", headers=visitor.headers()
        ) as export:
            assert export.status_code == 200
            body = b"".join(export.iter_bytes()).decode()
        streamed = time.monotonic() - started
        rows = list(csv.reader(io.StringIO(body)))
        assert len(rows) == seeded + 1 and body.endswith("\n")
        said = rows[0].index("explanation")
        assert {row[said] for row in rows[1:]} == {f"seeded row {i}" for i in range(seeded)}
    production.timings[f"CSV export of {seeded} rows"] = streamed

    # Logs: one JSON object per line in every process; one line per request, with our
    # tokens masked and no query string; one line per job transition.
    web = json_lines(production.log("web"))
    access = [e for e in web if e["logger"] == "gunicorn.access"]
    paths = {e["path"] for e in access}
    assert "/inputs/[redacted]/" in paths
    assert f"/hooks/local/{job_id}/[redacted]/" in paths
    text = production.log("web")
    assert input_token not in text and hook_token not in text and "query-secret" not in text
    exports = [e for e in access if e["path"] == "/spend/export.csv"]
    assert exports[-1]["status"] == 200 and exports[-1]["duration_ms"] > TIMEOUT * 1000
    assert all({"method", "status", "duration_ms"} <= e.keys() for e in access)

    worker = json_lines(production.log("worker"))
    moves = [e for e in worker if e["logger"] == "jobs.lifecycle" and e["job_id"] == job_id]
    assert [e["state"] for e in moves] == ["submitting", "fetching", "succeeded"]
    assert all(e["provider"] == "local" and "duration_s" in e for e in moves)
    json_lines(production.log("tracker"))


@pytest.mark.parametrize("width, height", [(1280, 800), (390, 844)])
def test_the_production_sign_in_page_is_styled(production, browser, width, height):
    """Chromium on the node's address, through the proxy's https header."""
    context = browser.new_context(
        viewport={"width": width, "height": height},
        base_url=production.url,
        extra_http_headers={"X-Forwarded-Proto": "https"},
    )
    try:
        page = context.new_page()
        page.goto("/accounts/login/")
        bar = page.locator(".topbar").evaluate("el => getComputedStyle(el).backgroundColor")
        assert bar == "rgb(17, 24, 39)"  # the portal's stylesheet applied
        shot(page, f"production-login-{width}")
    finally:
        context.close()
