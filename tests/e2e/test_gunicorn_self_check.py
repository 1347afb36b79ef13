"""The start-up self-check under the production web server (issue #11, item 1): the
Procfile's gunicorn line, through gunicorn.conf.py's `when_ready`, checks that
PUBLIC_BASE_URL answers once gunicorn listens, as `bin/run` does. A wrong address gives
one WARNING line in the web log (JSON, like every other line) and the banner's Heartbeat
row; a right one records that all is well and warns of nothing."""

import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, free_port
from tests.e2e.harness import Stack, wait_for
from tests.e2e.test_production import json_lines, procfile

pytestmark = pytest.mark.e2e

LATEST = (
    "import json; from jobs import self_check; beat = self_check.latest(); "
    "print(json.dumps(beat and {'at': beat.beat_at.isoformat(), **beat.detail}))"
)


class Web:
    """gunicorn as the Procfile starts it, on the stack's database."""

    def __init__(self, stack: Stack, public_base_url: str, port: int, log_name: str):
        self.log_path = stack.tmp / f"{log_name}.log"
        env = {
            **stack.env,
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",  # this `gunicorn`
            "PUBLIC_BASE_URL": public_base_url,
            "BIND": f"127.0.0.1:{port}",
        }
        self.proc = subprocess.Popen(
            shlex.split(procfile()["web"]),
            cwd=ROOT,
            env=env,
            stdout=self.log_path.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the check's own process goes with the group
        )

    def log(self) -> list[dict]:
        return json_lines(self.log_path.read_text())  # fails on a line that is not JSON

    def stop(self):
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=30)


@pytest.fixture
def stack(tmp_path):
    stack = Stack(
        tmp_path,
        DEBUG="false",  # production, as the Procfile runs
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1",
        PUBLIC_BASE_URL="http://127.0.0.1:1",  # for migrate; each start sets its own
        LOG_FORMAT="json",
        WEB_CONCURRENCY="1",
        GUNICORN_GRACEFUL_TIMEOUT="2",
    )
    (tmp_path / "static").mkdir()  # STATIC_ROOT: whitenoise warns (not in JSON) without it
    yield stack
    stack.stop()


def latest(stack: Stack) -> dict | None:
    return json.loads(stack.manage("shell", "-c", LATEST).stdout.strip().splitlines()[-1])


def warnings_of(web: Web) -> list[dict]:
    return [e for e in web.log() if e["logger"] == "jobs.self_check"]


def test_gunicorn_checks_its_public_address_at_start(stack):
    assert latest(stack) is None

    # Nothing listens where PUBLIC_BASE_URL points (a port taken and closed again).
    wrong = f"http://127.0.0.1:{free_port()}"
    web = Web(stack, wrong, free_port(), "wrong")
    try:
        said = wait_for(lambda: warnings_of(web), 60, f"no warning:\n{web.log_path.read_text()}")
    finally:
        web.stop()
    assert [e["level"] for e in said] == ["WARNING"]
    assert f"PUBLIC_BASE_URL {wrong} does not answer" in said[0]["message"]
    first = latest(stack)
    assert first["ok"] is False
    assert first["failing"] == [{"what": "PUBLIC_BASE_URL", "url": f"{wrong}/healthz/live"}]

    # PUBLIC_BASE_URL is where gunicorn listens: the check passes and says nothing.
    port = free_port()
    web = Web(stack, f"http://127.0.0.1:{port}", port, "right")
    try:
        second = wait_for(
            lambda: (beat := latest(stack))["at"] != first["at"] and beat,
            60,
            f"no second check:\n{web.log_path.read_text()}",
        )
        assert second["ok"] is True and second["failing"] == []
        assert warnings_of(web) == []
        assert any(
            e["logger"] == "gunicorn.access" and e["path"] == "/healthz/live" for e in web.log()
        )
    finally:
        web.stop()
