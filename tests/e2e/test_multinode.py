"""Many machines: two supervised clusters and two trackers share one PostgreSQL and one
Redis. 100 jobs go through the sandboxes; one cluster and one tracker are SIGKILLed
midway and not started again (their machine is gone). Every job must end exactly once,
no provider task may be submitted twice, no ledger row doubled: the survivors take over
by lease, SKIP LOCKED and conditional claims.

Each "machine" has its own VAR_DIR and media folder; they share the database, the broker
and an S3 bucket (moto's server on loopback), where every file lives."""

import os
import signal
import time
import uuid

import pytest

from tests.e2e.harness import (
    Stack,
    free_port,
    needs_postgres_and_redis,
    problems,
    qclusters,
    submit,
    timings,
    unfinished,
    verdict,
    wait_for,
)
from tests.s3 import AWS_ENV, make_bucket

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]
JOBS = 100
PROVIDERS = ["pixazo", "pixelcut", "fal", "ximilar", "apixo", "local"]


@pytest.fixture
def stack(tmp_path, s3_server):
    needs_postgres_and_redis()
    port = free_port()
    bucket = f"multinode-{uuid.uuid4().hex[:8]}"
    make_bucket(s3_server.url, bucket)
    stack = Stack(
        tmp_path,
        Q_WORKERS="2",
        SANDBOX_LATENCY="2",
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        LOG_LEVEL="INFO",
        STORAGE_URL=f"s3://{bucket}?endpoint_url={s3_server.url}&region=us-east-1",
        **AWS_ENV,
    )
    stack.port = port
    yield stack
    stack.stop()


def on_machine(stack, machine: str, name: str, *args):
    """Start a process as if on its own machine: its own VAR_DIR, the shared rest."""
    var = stack.tmp / machine
    var.mkdir(exist_ok=True)
    saved = dict(stack.env)
    stack.env.update(VAR_DIR=str(var), MEDIA_ROOT=str(var / "media"))
    try:
        return stack.start(f"{machine}-{name}", *args)
    finally:
        stack.env = saved


def test_two_machines_share_the_work_and_survive_losing_one(stack):
    stack.start("web", "runserver", f"127.0.0.1:{stack.port}", "--noreload")
    for machine in ("a", "b"):
        on_machine(stack, machine, "cluster", "cluster")
        on_machine(stack, machine, "tracker", "track")
    made, refused = submit(stack, JOBS, PROVIDERS, seed="multinode")
    assert len(made) == JOBS and refused == 0

    # Midway: machine A loses its cluster (supervisor and workers) and its tracker.
    wait_for(lambda: len(unfinished(stack)) <= JOBS - 10, 300, "no progress", pause=1)
    cluster_a = stack.procs["a-cluster"]
    groups = list(qclusters(cluster_a.pid).values())
    cluster_a.send_signal(signal.SIGKILL)
    for group in groups:
        os.killpg(group, signal.SIGKILL)
    stack.procs["a-tracker"].send_signal(signal.SIGKILL)
    killed_at = time.time()

    wait_for(lambda: unfinished(stack) == [], 400, "jobs still unfinished", pause=2)
    outcome = verdict(stack)
    found = {k: v for k, v in problems(outcome, made).items() if v}
    jobs = outcome["jobs"]
    states = {s: sum(j["state"] == s for j in jobs) for s in ("succeeded", "failed", "canceled")}
    codes = sorted({j["error_code"] for j in jobs if j["state"] == "failed"})
    summary, _ = timings(outcome, killed_at)
    worked = {m: stack.log(f"{m}-cluster").count("processing") for m in ("a", "b")}
    print(
        f"\nmulti-node: {len(jobs)} jobs, {states} (failures: {codes}); "
        f"tasks run on machine a {worked['a']}, "
        f"on b {worked['b']}; killed a's cluster and tracker midway; {summary}; "
        f"problems: {found or 'none'}"
    )
    assert found == {}
    assert worked["a"] and worked["b"]  # both machines really took work
