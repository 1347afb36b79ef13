"""The cluster supervisor's verdict: frozen only when work waits, nothing started for a
while, and a worker was free to start it (tests/e2e/test_cluster_freeze.py kills a real
worker; these pin the rule itself)."""

import os
import time

import pytest
from django.utils import timezone

from jobs import watchdog
from jobs.models import Job


@pytest.fixture
def watch(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    settings.CLUSTER_STALL_SECONDS = 30
    settings.QUEUE_WORKERS = {**settings.QUEUE_WORKERS, "submit": 2}
    watch = watchdog.ClusterWatch(["manage.py"], "submit")
    watch.state.mkdir(parents=True)
    watch.started_at = time.monotonic() - 300  # running for five minutes
    return watch


@pytest.fixture
def waiting_job(make_job, owner, team):
    job = make_job(owner, team, run=False)
    Job.objects.filter(pk=job.pk).update(
        enqueued_at=timezone.now() - timezone.timedelta(seconds=45)
    )
    return job


def started(watch, seconds_ago):
    marker = watch.state / watchdog.STARTED
    marker.touch()
    moment = time.time() - seconds_ago
    os.utime(marker, (moment, moment))


def test_work_waiting_with_nothing_started_and_a_free_worker_is_a_freeze(watch, waiting_job):
    started(watch, seconds_ago=120)
    verdict = watch.measure()
    assert verdict.frozen
    assert verdict.waiting == 1 and verdict.waiting_for >= 45 and verdict.busy_workers == 0


def test_a_cluster_that_keeps_starting_tasks_is_not_frozen(watch, waiting_job):
    started(watch, seconds_ago=2)
    assert not watch.measure().frozen


def test_an_idle_cluster_with_nothing_waiting_is_not_frozen(watch, db):
    started(watch, seconds_ago=600)
    verdict = watch.measure()
    assert verdict.waiting == 0 and not verdict.frozen


def test_every_worker_busy_on_a_long_task_is_not_a_freeze(watch, waiting_job):
    started(watch, seconds_ago=100)
    for pid in (os.getpid(), os.getppid()):  # two live processes stand in for workers
        (watch.state / f"busy-{pid}").touch()
    verdict = watch.measure()
    assert verdict.busy_workers == 2 and not verdict.frozen


def test_a_worker_that_died_mid_task_does_not_count_as_busy(watch, waiting_job):
    started(watch, seconds_ago=100)
    (watch.state / "busy-999999999").touch()
    verdict = watch.measure()
    assert verdict.busy_workers == 0 and verdict.frozen
    assert not (watch.state / "busy-999999999").exists()


def test_a_fresh_cluster_gets_its_time_before_it_is_judged(watch, waiting_job):
    watch.started_at = time.monotonic() - 5
    assert not watch.measure().frozen


def test_restarts_that_start_nothing_back_off(watch, waiting_job):
    started(watch, seconds_ago=40)
    watch.fruitless = 1  # restarted once already, and nothing started since
    assert not watch.measure().frozen  # now it waits 60 s, not 30
    started(watch, seconds_ago=70)
    Job.objects.filter(pk=waiting_job.pk).update(
        enqueued_at=timezone.now() - timezone.timedelta(seconds=90)
    )
    assert watch.measure().frozen


def test_workers_note_their_tasks_only_under_a_supervisor(monkeypatch, tmp_path):
    monkeypatch.delenv(watchdog.STATE_ENV, raising=False)
    watchdog.task_started(None)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv(watchdog.STATE_ENV, str(tmp_path))
    watchdog.task_started(None)
    assert {p.name for p in tmp_path.iterdir()} == {"started", f"busy-{os.getpid()}"}
    watchdog.task_finished(None)
    assert {p.name for p in tmp_path.iterdir()} == {"started"}


STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
SUPERVISE = """
import sys, django
django.setup()
from jobs.watchdog import Supervisor
Supervisor([sys.executable, "-c", sys.argv[1]]).run()
"""


def test_a_stopped_supervisor_leaves_no_cluster_behind_even_a_stubborn_one(tmp_path):
    # qclusters that ignore SIGTERM (as a real one sometimes hangs on exit): stopping the
    # supervisor kills all three within one grace period, not one per queue, so nothing
    # outlives it and no process manager has to SIGKILL it first.
    import signal
    import subprocess
    import sys

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "VAR_DIR": str(tmp_path),
        "CLUSTER_STOP_GRACE_SECONDS": "2",
        "CLUSTER_CHECK_SECONDS": "0.2",
    }
    supervisor = subprocess.Popen([sys.executable, "-c", SUPERVISE, STUBBORN], env=env)
    try:
        groups = []
        deadline = time.monotonic() + 30
        while len(groups) < 3 and time.monotonic() < deadline:
            groups = [int(g.read_text()) for g in (tmp_path / "run").glob("*/*/group")]
            time.sleep(0.05)
        assert len(groups) == 3, "the supervisor did not start a cluster per queue"
        supervisor.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert supervisor.wait(timeout=20) == 0
        assert time.monotonic() - started < 2 * 3  # one grace period, not three
        for group in groups:
            with pytest.raises(ProcessLookupError):
                os.killpg(group, 0)
    finally:
        supervisor.kill()
