"""Chaos: ~60 jobs over the five sandboxes with faults switched on, while a worker, the
whole cluster and the tracker are each SIGKILLed once. Money and jobs must stay exact and
the portal must heal by itself.

Runs the production process set on PostgreSQL + Redis (skipped without them): the web
server (serving the sandboxes), `manage.py cluster` and `manage.py track`; this test
plays the process manager, starting a killed tracker again as systemd or a Procfile
runner would. Prints its figures (-s shows them)."""

import json
import os
import signal
import threading
import time
import uuid

import pytest

from tests.e2e.harness import (
    Stack,
    children,
    free_port,
    needs_postgres_and_redis,
    problems,
    qclusters,
    shell,
    submit,
    timings,
    unfinished,
    verdict,
    wait_for,
    wchan,
)
from upscaler_site.env import derived_secret

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]

WAVES = 3
PER_WAVE = 20
WORKERS = 2
PROVIDERS = ["pixazo", "pixelcut", "fal", "ximilar", "apixo"]
# One fault (or two) per provider, as the sandboxes' admin switches them on.
FAULTS = {
    "pixazo": dict(error_status=429, error_count=8, error_on="submit", retry_after=2),
    "pixelcut": dict(error_status=503, error_count=4, error_on="submit", retry_after=1),
    "fal": dict(task_failure="runner_server_error"),
    "ximilar": dict(webhook="duplicate", error_status=500, error_count=3, error_on="poll"),
    "apixo": dict(webhook="late", late_seconds=3, slow_seconds=0.5),
}
BUDGETS = ["0.10", "0.20", "0.25", "0.40", "1.00"]  # five teams; some submissions won't fit
# These talk to their sandbox as if it were the real API (a key, a base URL), so their jobs
# are real spend and meet the budgets; the other two stay sandbox jobs, which get webhooks.
REAL_MODE = {"pixazo": "PIXAZO", "pixelcut": "PIXELCUT", "fal": "FAL_QUEUE"}
KEYS = {"pixazo": "PIXAZO_API_KEY", "pixelcut": "PIXELCUT_API_KEY", "fal": "FAL_KEY"}

SETUP = r"""
import json, os
from decimal import Decimal
from django.contrib.auth import get_user_model
from billing.models import Membership, Team
from jobs.sandbox.engine import set_faults
user = get_user_model().objects.get(username=os.environ["DEMO_USERNAME"])
for i, budget in enumerate(json.loads(os.environ["BUDGETS"])):
    team = Team.objects.create(name=f"chaos-{i}", monthly_budget=Decimal(budget))
    Membership.objects.create(team=team, user=user, role="manager")
for slug, values in json.loads(os.environ["FAULTS"]).items():
    set_faults(slug, **values)
"""


# Everything the assertions need, read in one go once the run is over.


@pytest.fixture
def stack(tmp_path):
    needs_postgres_and_redis()
    port = free_port()
    secret = "chaos-" + uuid.uuid4().hex * 2
    real = {}
    for slug, prefix in REAL_MODE.items():
        real[KEYS[slug]] = derived_secret(secret, "sandbox-api-key")
        real[f"{prefix}_BASE_URL"] = f"http://127.0.0.1:{port}/sandbox/{slug}"
    stack = Stack(
        tmp_path,
        SECRET_KEY=secret,
        Q_WORKERS=str(WORKERS),
        SANDBOX_LATENCY="2",
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        RETRY_BUDGET_SECONDS="90",
        LOG_LEVEL="INFO",
        **real,
    )
    stack.port = port
    yield stack
    stack.stop()


class ProcessManager(threading.Thread):
    """Starts the tracker and the cluster supervisor again when they die, like systemd."""

    def __init__(self, stack):
        super().__init__(daemon=True)
        self.stack, self.stopping = stack, threading.Event()
        self.restarts = {"tracker": 0, "cluster": 0}

    def run(self):
        while not self.stopping.wait(0.5):
            for name, args in (("tracker", ["track"]), ("cluster", ["cluster"])):
                if self.stack.procs[name].poll() is not None:
                    time.sleep(1)  # a process manager's restart delay
                    self.stack.start(name, *args)
                    self.restarts[name] += 1


def qcluster_of(stack) -> int | None:
    """The submit queue's qcluster (the queue that bears the prefix's name)."""
    return qclusters(stack.procs["cluster"].pid).get(stack.env["TASK_QUEUE_PREFIX"])


def workers_of(stack) -> list[int]:
    qcluster = qcluster_of(stack)
    sentinels = children(qcluster) if qcluster else []
    return children(sentinels[0])[:WORKERS] if sentinels else []


def kill_a_worker(stack) -> str:
    """SIGKILL the idle worker holding the task queue's lock when there is one (the
    freeze), else any worker."""
    holder = None
    deadline = time.monotonic() + 15
    while holder is None and time.monotonic() < deadline:
        readers = [pid for pid in workers_of(stack) if "pipe" in wchan(pid)]
        holder = readers[0] if len(readers) == 1 else None
        time.sleep(0.2)  # waiting for the workers to go idle
    victim = holder or wait_for(lambda: workers_of(stack), 30, "no workers")[0]
    os.kill(victim, signal.SIGKILL)
    return "idle worker holding the queue lock" if holder else "busy worker"


def test_chaos_keeps_money_and_jobs_exact(stack):
    stack.start("web", "runserver", f"127.0.0.1:{stack.port}", "--noreload")
    stack.start("cluster", "cluster")
    stack.start("tracker", "track")
    shell(stack, SETUP + "print(1)", BUDGETS=json.dumps(BUDGETS), FAULTS=json.dumps(FAULTS))
    manager = ProcessManager(stack)
    manager.start()

    made, refused, kills = [], 0, []

    def wave(n):
        nonlocal refused
        ids, no = submit(stack, PER_WAVE, PROVIDERS, seed=n)
        made.extend(ids)
        refused += no

    wave(1)
    kills.append((kill_a_worker(stack), time.time()))
    wave(2)
    time.sleep(3)  # let wave 2 get under way before the tracker goes
    stack.procs["tracker"].send_signal(signal.SIGKILL)
    kills.append(("tracker", time.time()))
    wave(3)
    time.sleep(3)
    for group in qclusters(stack.procs["cluster"].pid).values():
        os.killpg(group, signal.SIGKILL)  # every queue's cluster, workers and all
    kills.append(("clusters (every queue's process group)", time.time()))
    last_kill = kills[-1][1]

    wait_for(lambda: unfinished(stack) == [], 240, "jobs still unfinished", pause=2)
    manager.stopping.set()
    outcome = verdict(stack)
    jobs = outcome["jobs"]
    found = problems(outcome, made)
    # The portal never answered a 500 (the sandboxes do, on purpose: a fault).
    found["500 answers"] = [
        line
        for line in stack.log("web").splitlines()
        if "Internal Server Error: /" in line and "Error: /sandbox/" not in line
    ]
    found["tracebacks"] = stack.log("web").count("Traceback")
    states = {s: sum(j["state"] == s for j in jobs) for s in ("succeeded", "failed", "canceled")}
    codes = sorted({j["error_code"] for j in jobs if j["state"] == "failed"})
    summary, p95_after_kill = timings(outcome, last_kill)
    print(
        f"\nchaos: {len(jobs)} jobs accepted, {refused} refused over budget; {states} "
        f"(failures: {codes}); "
        f"kills: {[k for k, _ in kills]}; restarts by the process manager: {manager.restarts}, "
        f"by the cluster supervisor: {stack.log('cluster').count('restarting it')} "
        f"({stack.log('cluster').count('frozen (')} of them for a freeze); "
        f"faults: {sorted(FAULTS)}; possibly billed "
        f"{sum(j['billing'] == 'possibly_billed' for j in jobs)}; {summary}; "
        f"problems: { {k: v for k, v in found.items() if v} or 'none' }"
    )
    assert {k: v for k, v in found.items() if v} == {}
    assert p95_after_kill < 60
