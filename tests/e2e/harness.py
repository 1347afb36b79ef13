"""Run the portal's background processes as real subprocesses, on a database of their own,
and look at them the way an operator would (/proc). Used by the fault tests."""

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from decimal import Decimal
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


def qclusters(supervisor_pid: int) -> dict[str, int]:
    """The qcluster processes a `manage.py cluster` runs, by the queue each serves."""
    found = {}
    for pid in children(supervisor_pid):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for entry in env:
            if entry.startswith(b"Q_CLUSTER_NAME="):
                found[entry.split(b"=", 1)[1].decode()] = pid
    return found


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
            "TASK_QUEUE_PREFIX": f"t{uuid.uuid4().hex[:10]}",  # its own Redis queues
            "PYTHONUNBUFFERED": "1",
            "DEMO_USERNAME": "stack",
            "DEMO_PASSWORD": "stack-password-1",
            # Stopped at once when the test is done (tests/test_watchdog.py tests the grace).
            "CLUSTER_STOP_GRACE_SECONDS": "2",
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def needs_postgres_and_redis():
    import pytest

    if not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")):
        pytest.skip("needs PostgreSQL and Redis (DATABASE_URL and REDIS_URL)")


# --- scripts run by `manage.py shell` against the stack's database ----------------------
SUBMIT = r"""
import json, os, random, uuid
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from billing.models import Team
from jobs import intake
from tests.images import image_bytes
user = get_user_model().objects.get(username=os.environ["DEMO_USERNAME"])
teams = list(Team.objects.filter(name__startswith="chaos-").order_by("name")) or list(
    user.teams.all())
providers = json.loads(os.environ["PROVIDERS"])
rng = random.Random(os.environ["WAVE"])
made, refused = [], 0
for i in range(int(os.environ["PER_WAVE"])):
    # Every image distinct, so each sandbox task can be traced back to its job.
    data = image_bytes(rng.randrange(96, 160), rng.randrange(80, 140), unique=True)
    name = f"chaos-{uuid.uuid4().hex[:8]}.png"
    try:
        (job,) = intake.submit_uploads(
            user=user, team=rng.choice(teams),
            files=[SimpleUploadedFile(name, data, "image/png")],
            choices=[(rng.choice(providers), {})],
        )
        made.append(job.pk)
    except intake.SubmissionRefused:
        refused += 1
print(json.dumps({"made": made, "refused": refused}))
"""

PROGRESS = r"""
import json
from jobs.models import Job
active = Job.objects.filter(state__in=Job.ACTIVE_STATES)
print(json.dumps(list(active.values_list("pk", flat=True))))
"""

VERDICT = r"""
import hashlib, json
from django.core.files.storage import default_storage
from billing import ledger
from billing.models import LedgerEntry, Team
from jobs.models import Job
from jobs.sandbox.models import SandboxTask

def digest(name):
    with default_storage.open(name, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()

tasks_per_input = {}
for task in SandboxTask.objects.exclude(input_name=""):
    key = (task.provider, digest(task.input_name))
    tasks_per_input[key] = tasks_per_input.get(key, 0) + 1
jobs = []
for job in Job.objects.all():
    # Notes written after the end (possibly billed) carry the final state too: what
    # matters is that one job never reached two different ends.
    final_events = sorted(set(job.events.filter(state__in=Job.FINAL_STATES).values_list(
        "state", flat=True)))
    kinds = list(job.ledger.values_list("kind", flat=True))
    jobs.append({
        "pk": job.pk, "provider": job.provider, "state": job.state,
        "error_code": job.error_code, "billing": job.billing_status,
        "final_events": final_events,
        "submits": tasks_per_input.get((job.provider, digest(job.input_file.name)), 0),
        "charges": kinds.count("charge"), "holds": kinds.count("hold"),
        "releases": kinds.count("release"),
        "created": job.created_at.timestamp(),
        "finished": job.finished_at.timestamp() if job.finished_at else None,
    })
teams = []
for team in Team.objects.filter(name__startswith="chaos-"):
    use = ledger.usage(team)
    teams.append({"name": team.name, "budget": str(use.budget), "spent": str(use.spent),
                  "held": str(use.held)})
print(json.dumps({"jobs": jobs, "teams": teams}))
"""


def shell(stack: Stack, script: str, **env):
    """Run `script` in `manage.py shell`; its last line of output, as JSON."""
    saved = dict(stack.env)
    stack.env.update({k: str(v) for k, v in env.items()})
    try:
        out = stack.manage("shell", "-c", script, timeout=300)
    finally:
        stack.env = saved
    return json.loads(out.stdout.strip().splitlines()[-1])


def submit(stack: Stack, count: int, providers: list[str], seed) -> tuple[list[int], int]:
    """`count` jobs, each a distinct image for a random provider and team (the teams whose
    name starts with "chaos-", else the demo user's own): (job ids, refused)."""
    out = shell(stack, SUBMIT, PROVIDERS=json.dumps(providers), WAVE=seed, PER_WAVE=count)
    return out["made"], out["refused"]


def unfinished(stack: Stack) -> list[int]:
    return shell(stack, PROGRESS)


def verdict(stack: Stack) -> dict:
    return shell(stack, VERDICT)


def problems(verdict: dict, made: list[int]) -> dict:
    """What must be empty after any fault: jobs that did not end exactly once, went to a
    provider twice, were held or charged twice, kept a hold for no reason, or teams over
    budget."""
    jobs = {j["pk"]: j for j in verdict["jobs"]}
    return {
        "missing": sorted(set(made) - set(jobs)),
        "stuck": [j["pk"] for j in jobs.values() if j["finished"] is None],
        "two ends": [j["pk"] for j in jobs.values() if j["final_events"] != [j["state"]]],
        "double submits": [j["pk"] for j in jobs.values() if j["submits"] > 1],
        "double ledger rows": [
            j["pk"]
            for j in jobs.values()
            if j["charges"] > 1 or j["holds"] != 1 or j["releases"] > 1
        ],
        "charged but not succeeded": [
            j["pk"] for j in jobs.values() if j["charges"] and j["state"] != "succeeded"
        ],
        "leftover holds": [
            j["pk"]
            for j in jobs.values()
            if j["releases"] != 1 and j["billing"] != "possibly_billed"
        ],
        "teams over budget": [
            t["name"]
            for t in verdict["teams"]
            if t["budget"] != "None"
            and Decimal(t["spent"]) + Decimal(t["held"]) > Decimal(t["budget"])
        ],
    }


def p95(values):
    values = sorted(values)
    return values[min(len(values) - 1, int(0.95 * len(values)))] if values else 0.0


def timings(verdict: dict, since: float) -> tuple[str, float]:
    """created -> finished (p50/p95/max), overall and counted from `since`."""
    jobs = verdict["jobs"]
    overall = [j["finished"] - j["created"] for j in jobs]
    after = [j["finished"] - max(j["created"], since) for j in jobs]
    return (
        f"created->finished p50 {statistics.median(overall):.1f} s, p95 {p95(overall):.1f} s, "
        f"max {max(overall):.1f} s; counted from the last kill p95 {p95(after):.1f} s, "
        f"max {max(after):.1f} s"
    ), p95(after)
