"""Run the portal's background processes as real subprocesses, on a database of their own,
and look at them the way an operator would (/proc). Used by the fault tests."""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tests.e2e.conftest import ROOT, _fresh_postgres


def children(pid: int) -> list[int]:
    """The direct children of `pid`, oldest (lowest pid) first."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces: fields after its closing parenthesis.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry.name))
    return sorted(found)


def wchan(pid: int) -> str:
    """What the kernel says the process is waiting in ("anon_pipe_read", "futex_...")."""
    try:
        return Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return ""


def wait_for(condition, timeout: float, message: str, pause: float = 0.2):
    """Poll `condition()` until it returns something truthy; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(pause)  # waiting on other processes, not timing a result


class Stack:
    """The portal's environment on a fresh database (SQLite file, or a new PostgreSQL
    database when DATABASE_URL is set; REDIS_URL is used as the broker when set), and the
    processes started on it."""

    def __init__(self, tmp: Path, **extra_env):
        self.tmp = tmp
        self.env = {
            **os.environ,
            "DEBUG": "true",
            "SECRET_KEY": "stack-" + uuid.uuid4().hex * 2,
            "VAR_DIR": str(tmp),
            "MEDIA_ROOT": str(tmp / "media"),
            "Q_CLUSTER_NAME": f"t{uuid.uuid4().hex[:10]}",  # its own Redis queue
            "PYTHONUNBUFFERED": "1",
            "DEMO_USERNAME": "stack",
            "DEMO_PASSWORD": "stack-password-1",
            **extra_env,
        }
        self.env.pop("DJANGO_SETTINGS_MODULE", None)
        self.drop_db = None
        if os.environ.get("DATABASE_URL"):
            self.env["DATABASE_URL"], self.drop_db = _fresh_postgres(os.environ["DATABASE_URL"])
        self.procs: dict[str, subprocess.Popen] = {}
        self.manage("migrate", "--noinput")
        self.manage("demo_user")

    def manage(self, *args, timeout=120, check=True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            check=check,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, name: str, *args) -> subprocess.Popen:
        log = (self.tmp / f"{name}.log").open("a")
        proc = subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self.drop_db:
            self.drop_db()
