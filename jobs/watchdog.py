"""Keeping the django-q2 cluster honest: it must prove it does work, or be restarted.

Why: a django-q2 worker that is killed while idle (an OOM kill does this) dies inside
`multiprocessing.Queue.get()` holding the queue's read lock. The lock is a semaphore
that nobody releases, so every other worker, and the one the cluster reincarnates, waits
on it for ever, while the cluster still looks alive (its guard and scheduler run). No
setting of django-q2 avoids it: every worker shares that one queue. So `manage.py
cluster` runs `qcluster` as a child and watches it:

- the workers note each task they start and finish in a small state folder of this
  supervisor's own (files, not the database: cheap, and scoped to this machine's
  cluster when several machines share the queue);
- every few seconds the supervisor measures whether work is waiting (tasks in the broker,
  or jobs queued for a while) and how long ago its cluster last started a task;
- work waiting for CLUSTER_STALL_SECONDS while the cluster started nothing and had an idle
  worker (busy workers on long downloads are not a freeze) means frozen: the whole
  process group is killed and a fresh cluster started, and the log says why;
- what it measured is written to a Heartbeat row, which /healthz reports.
"""

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections
from django.db.models import Count, Min, Q
from django.utils import timezone

log = logging.getLogger(__name__)
STATE_ENV = "UPSCALER_CLUSTER_STATE"  # set by the supervisor for its qcluster child
STARTED = "started"  # touched by a worker at each task start: its mtime is the proof


# --- in the workers (django-q2 signals, connected in jobs.apps) --------------------------
def _state_dir() -> Path | None:
    path = os.environ.get(STATE_ENV)
    return Path(path) if path else None


def task_started(sender, **kwargs) -> None:
    state = _state_dir()
    if state is None:  # a qcluster nobody supervises, or tasks run in-process
        return
    try:
        (state / f"busy-{os.getpid()}").touch()
        (state / STARTED).touch()
    except OSError:  # the proof is best effort; never fail a task over it
        pass


def task_finished(sender, **kwargs) -> None:
    state = _state_dir()
    if state is None:
        return
    with suppress(OSError):
        (state / f"busy-{os.getpid()}").unlink(missing_ok=True)


# --- in the supervisor --------------------------------------------------------------------
@dataclass
class Verdict:
    waiting: int  # tasks in the broker plus jobs queued for a while
    waiting_for: float  # seconds work has been waiting without a break
    last_start_age: float  # seconds since this cluster last started a task
    busy_workers: int
    workers: int
    frozen: bool
    restarts: int

    def describe(self) -> str:
        return (
            f"{self.waiting} waiting for {self.waiting_for:.0f} s, no task started for "
            f"{self.last_start_age:.0f} s, {self.busy_workers} of {self.workers} workers busy"
        )


def _waiting_jobs(kind: str):
    """Jobs whose task waits on the queue of `kind` (their task may sit in a frozen
    cluster's local queue, where the broker no longer sees it)."""
    from jobs.models import Job

    now = timezone.now()
    due = Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now)
    if kind == "submit":
        return Job.objects.filter(due, state=Job.State.QUEUED, enqueued_at__isnull=False)
    if kind == "finish":  # waiting for a download nobody has started
        return Job.objects.filter(
            due, state=Job.State.FETCHING, enqueued_at__isnull=False, lease_owner=""
        )
    return Job.objects.none()


def waiting_work(kind: str = "submit") -> tuple[int, float]:
    """(how many, how long the oldest has waited in seconds, 0 if unknown) of the work
    that is due on the queue of `kind`: tasks the broker holds, and jobs waiting."""
    from django_q.brokers import get_broker

    try:
        in_broker = get_broker(settings.TASK_QUEUES[kind]).queue_size() or 0
    except Exception:  # a broker that does not answer is /healthz's business  # noqa: BLE001
        in_broker = 0
    now = timezone.now()
    jobs = _waiting_jobs(kind).aggregate(count=Count("pk"), oldest=Min("enqueued_at"))
    oldest = (now - jobs["oldest"]).total_seconds() if jobs["oldest"] else 0.0
    return in_broker + jobs["count"], max(oldest, 0.0)


def resend_waiting(kind: str = "submit") -> int:
    """Send the task of every job waiting on the queue of `kind` again: after a cluster
    was killed, their tasks may have been in its memory (Redis hands a task over without
    an acknowledgement). A duplicate is harmless: only one claim of a job succeeds."""
    from jobs import tasks

    ids = list(_waiting_jobs(kind).values_list("pk", flat=True)[:5000])
    if kind == "submit":
        tasks.enqueue_submit(ids)
    else:
        for job_id in ids:
            tasks.enqueue_finish(job_id)
    if ids:
        log.warning("sent the %s task of %d waiting jobs again", kind, len(ids))
    return len(ids)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ClusterWatch:
    """One queue's `qcluster`, run as a child and restarted when it is frozen or dead."""

    def __init__(self, manage: list[str], kind: str, folder: Path | None = None):
        self.manage = manage
        self.kind = kind
        self.queue = settings.TASK_QUEUES[kind]
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{kind}"
        folder = folder or Path(settings.VAR_DIR) / "run" / supervisor_folder_name()
        self.state = folder / kind
        self.child: subprocess.Popen | None = None
        self.started_at = 0.0
        self.waiting_since: float | None = None
        self.restarts = 0
        self.fruitless = 0  # restarts in a row after which no task started

    # --- the child ---------------------------------------------------------------------
    def start(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        for stale in self.state.iterdir():
            stale.unlink(missing_ok=True)
        # Q_CLUSTER_NAME picks the queue (django-q2's ALT_CLUSTERS; see settings).
        env = {**os.environ, STATE_ENV: str(self.state), "Q_CLUSTER_NAME": self.queue}
        # Its own process group, so a frozen cluster is killed whole, workers included;
        # and it is told to stop if this supervisor dies.
        self.child = subprocess.Popen(
            [*self.manage, "qcluster"],
            env=env,
            start_new_session=True,
            preexec_fn=stop_with_parent,
        )
        (self.state / "group").write_text(str(self.child.pid))
        self.started_at = time.monotonic()
        self.waiting_since = None

    def kill(self, grace: float) -> None:
        """SIGTERM the child's group, then SIGKILL what is left after `grace` seconds (a
        frozen cluster does not stop on SIGTERM)."""
        self.terminate()
        self.finish(time.monotonic() + grace)

    def terminate(self) -> None:
        if self.child is not None and self.child.poll() is None:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(self.child.pid, signal.SIGTERM)

    def finish(self, deadline: float) -> None:
        """Wait for the terminated child until `deadline`, then SIGKILL its group: a
        qcluster told to stop sometimes never exits (its main process waits on a queue
        whose reader is gone), and must not outlive its supervisor."""
        if self.child is None:
            return
        with suppress(subprocess.TimeoutExpired):
            self.child.wait(timeout=max(deadline - time.monotonic(), 0))
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.child.pid, signal.SIGKILL)
        self.child.wait()

    def restart(self, why: str) -> None:
        self.restarts += 1
        log.error("cluster %s: %s; restarting it (restart %d)", self.instance, why, self.restarts)
        self.kill(grace=0 if "frozen" in why else 10)
        self.start()
        resend_waiting(self.kind)

    # --- measuring ---------------------------------------------------------------------
    def last_start_age(self) -> float:
        since_start = time.monotonic() - self.started_at
        try:
            mtime = (self.state / STARTED).stat().st_mtime
        except FileNotFoundError:
            return since_start
        return min(since_start, max(0.0, time.time() - mtime))

    def busy_workers(self) -> int:
        busy = 0
        for marker in self.state.glob("busy-*"):
            pid = int(marker.name.split("-", 1)[1])
            if _alive(pid):
                busy += 1
            else:  # died mid-task: the cluster reincarnates it, the marker goes
                marker.unlink(missing_ok=True)
        return busy

    def measure(self) -> Verdict:
        waiting, oldest = waiting_work(self.kind)
        now = time.monotonic()
        if waiting:
            self.waiting_since = self.waiting_since or now
        else:
            self.waiting_since = None
        # Seen waiting by us, or known to have waited longer by its job's own clock.
        seen = now - self.waiting_since if self.waiting_since else 0.0
        waiting_for = max(seen, oldest) if waiting else 0.0
        workers = settings.QUEUE_WORKERS[self.kind]
        busy = self.busy_workers()
        age = self.last_start_age()
        # A cluster restarted again and again without starting anything is not helped by
        # more restarts: each one waits twice as long as the one before (up to 10 min).
        stall = settings.CLUSTER_STALL_SECONDS * 2 ** min(self.fruitless, 5)
        frozen = waiting_for >= stall and age >= stall and busy < workers
        return Verdict(waiting, waiting_for, age, busy, workers, frozen, self.restarts)

    def report(self, verdict: Verdict) -> None:
        from jobs.models import Heartbeat

        Heartbeat.objects.update_or_create(
            name=f"cluster:{self.instance}",
            defaults={"beat_at": timezone.now(), "detail": asdict(verdict)},
        )

    def check(self) -> None:
        if self.child.poll() is not None:
            self.restart(f"qcluster exited with status {self.child.returncode}")
            return
        verdict = self.measure()
        if verdict.last_start_age < time.monotonic() - self.started_at:
            self.fruitless = 0  # a task started since the last restart
        try:
            self.report(verdict)
        except Exception:  # noqa: BLE001 - the database may be down; keep watching
            log.exception("cluster %s: could not record its heartbeat", self.instance)
        if verdict.frozen:
            self.restart(f"frozen ({verdict.describe()})")
            self.fruitless += 1

    def forget(self) -> None:
        from jobs.models import Heartbeat

        with suppress(Exception):  # a database that is gone has nothing to clean
            Heartbeat.objects.filter(name=f"cluster:{self.instance}").delete()
        _remove(self.state)


def supervisor_folder_name(pid: int | None = None) -> str:
    return f"cluster-{socket.gethostname()}-{pid or os.getpid()}"


class Supervisor:
    """`manage.py cluster`: one watched qcluster per queue (submit, finish, house)."""

    def __init__(self, manage: list[str], kinds=None):
        self.runs = Path(settings.VAR_DIR) / "run"
        self.folder = self.runs / supervisor_folder_name()
        kinds = kinds or list(settings.TASK_QUEUES)
        self.watches = [ClusterWatch(manage, kind, self.folder) for kind in kinds]
        self.stopping = False

    def bury_orphans(self) -> None:
        """Kill the clusters of supervisors on this machine that were killed themselves
        (SIGKILL leaves their qclusters' workers running on their own)."""
        for folder in self.runs.glob(supervisor_folder_name("*")):
            pid = int(folder.name.rsplit("-", 1)[1])
            if pid == os.getpid() or _alive(pid):
                continue
            for group_file in folder.glob("*/group"):
                with suppress(ValueError, ProcessLookupError, PermissionError):
                    os.killpg(int(group_file.read_text()), signal.SIGKILL)
                    log.warning("killed the orphaned %s cluster of %s", group_file.parent.name, pid)
                _remove(group_file.parent)
            _remove(folder)

    def run(self) -> None:
        def stop(*_):
            self.stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        self.runs.mkdir(parents=True, exist_ok=True)
        self.bury_orphans()
        from jobs.tasks import route_schedules

        with suppress(Exception):  # the schedules' queue; migrate does it too
            route_schedules()
        for watch in self.watches:
            watch.start()
            log.info("cluster %s: supervising qcluster (pid %s)", watch.instance, watch.child.pid)
        try:
            while not self.stopping:
                time.sleep(settings.CLUSTER_CHECK_SECONDS)  # the supervisor's own pace
                for watch in self.watches:
                    if self.stopping:
                        break
                    try:
                        watch.check()
                    except Exception:  # noqa: BLE001 - a bad check must not stop supervision
                        log.exception("cluster %s: check failed", watch.instance)
                close_old_connections()
        finally:
            # All at once, so stopping takes one grace period, not one per queue (a
            # process manager SIGKILLs a supervisor that takes too long, and that would
            # leave the last clusters running on their own).
            for watch in self.watches:
                watch.terminate()
            deadline = time.monotonic() + settings.CLUSTER_STOP_GRACE_SECONDS
            for watch in self.watches:
                watch.finish(deadline)
                watch.forget()
            _remove(self.folder)


def _remove(folder: Path) -> None:
    with suppress(OSError):
        for leftover in folder.iterdir():
            if leftover.is_dir():
                _remove(leftover)
            else:
                leftover.unlink(missing_ok=True)
        folder.rmdir()


PR_SET_PDEATHSIG = 1


def stop_with_parent() -> None:
    """In a child, before it runs: ask Linux to SIGTERM it when its parent dies, so a
    killed supervisor (or `serve`) does not leave its parts running on their own."""
    with suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def manage_command() -> list[str]:
    return [sys.executable, os.path.abspath(sys.argv[0])]
