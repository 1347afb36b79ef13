"""A django-q2 worker killed while idle freezes its whole cluster; the supervisor
(`manage.py cluster`, what bin/run and the Procfile start) finds it and heals it.

The freeze is real: an idle worker blocks in `multiprocessing.Queue.get()` holding the
queue's read lock; SIGKILL it there and the lock is never released, so every other worker
(and the one django-q2 reincarnates) waits on it for ever."""

import os
import signal
import time

import pytest

from tests.e2e.harness import Stack, children, qclusters, wait_for, wchan
from tests.images import image_bytes

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]
WORKERS = 2


@pytest.fixture
def stack(tmp_path):
    stack = Stack(tmp_path, Q_WORKERS=str(WORKERS))
    yield stack
    stack.stop()


def lock_holder(supervisor_pid: int, queue: str) -> int | None:
    """The idle worker that holds the task queue's read lock: of the submit cluster's
    workers (the sentinel's first children), the one blocked reading the queue's pipe;
    the others wait on the lock itself."""
    qcluster = qclusters(supervisor_pid).get(queue)
    if qcluster is None:
        return None
    sentinels = children(qcluster)
    if not sentinels:
        return None
    workers = children(sentinels[0])[:WORKERS]
    readers = [pid for pid in workers if "pipe" in wchan(pid)]
    return readers[0] if len(workers) == WORKERS and len(readers) == 1 else None


def upscale(stack, name: str, timeout: float):
    path = stack.tmp / name
    path.write_bytes(image_bytes(100, 80, unique=True))  # a real run, not a reuse
    started = time.monotonic()
    out = stack.manage("upscale", str(path), "--provider", "local", "--wait", timeout=timeout)
    return out, time.monotonic() - started


def test_a_cluster_frozen_by_a_killed_idle_worker_heals_and_finishes_new_work(stack):
    supervisor = stack.start("cluster", "cluster")
    stack.start("tracker", "track")
    first, _ = upscale(stack, "before.png", timeout=60)
    assert "succeeded" in first.stdout

    submit_queue = stack.env["TASK_QUEUE_PREFIX"]  # the submit queue bears the prefix
    holder = wait_for(
        lambda: lock_holder(supervisor.pid, submit_queue), 30, "no idle worker in Queue.get()"
    )
    frozen = qclusters(supervisor.pid)[submit_queue]
    os.kill(holder, signal.SIGKILL)

    after, took = upscale(stack, "after.png", timeout=90)
    assert "succeeded" in after.stdout, after.stdout + after.stderr
    print(f"\nfrozen cluster healed: the job sent after the kill finished in {took:.0f} s")
    assert took < 90
    log = stack.log("cluster")
    assert "frozen (" in log and "restarting it (restart 1)" in log
    # The healed cluster is a new process tree; the frozen one is gone.
    assert qclusters(supervisor.pid)[submit_queue] != frozen
    assert frozen not in children(supervisor.pid)
