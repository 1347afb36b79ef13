"""Leases: which process holds a job's current step, and until when.

A step (a submit, a download) is claimed with a conditional UPDATE that writes
`lease_owner` and `lease_expires_at` (`lifecycle.claim`, `lifecycle.claim_download`).
While the step runs, a small thread pushes the expiry ahead every third of the lease, so
a live worker keeps its lease however long a large upload or a big upscale takes, and a
dead one (SIGKILL, out of memory, a task killed at TASK_TIMEOUT) loses it within one
lease length. The tracker takes expired leases over (`jobs.recovery`).
"""

import logging
import os
import secrets
import socket
import threading
from contextlib import contextmanager

from django.db import connection
from django.utils import timezone

log = logging.getLogger(__name__)
HOST = socket.gethostname()[:60]
RELEASED = {"lease_owner": "", "lease_expires_at": None}  # fields of a job nobody holds


def new_owner() -> str:
    """'<host>:<pid>:<random>': who holds a lease, unique per claim, so a renewal or a
    takeover never mistakes one claim of a process for another."""
    return f"{HOST}:{os.getpid()}:{secrets.token_hex(3)}"


def until(seconds: float):
    return timezone.now() + timezone.timedelta(seconds=seconds)


@contextmanager
def kept(job_id: int, owner: str, seconds: float):
    """Renew `owner`'s lease on the job every third of `seconds` while the block runs.

    A thread, not a coroutine: the local provider's upscale blocks the event loop. It
    touches the database only when it renews (a step longer than seconds / 3), and
    renews only a lease still held by `owner`, so one taken over stays taken over."""
    from jobs.models import Job

    stop = threading.Event()

    def renew():
        try:
            while not stop.wait(seconds / 3):
                Job.objects.filter(pk=job_id, lease_owner=owner).update(
                    lease_expires_at=until(seconds)
                )
        except Exception:
            log.exception("renewing the lease of job %s failed", job_id)
        finally:
            connection.close()  # this thread's own connection, if it opened one

    thread = threading.Thread(target=renew, name=f"lease-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        # Not waited for long: a renewal stuck on a busy database ends on its own, and
        # renews nothing once the job has moved on.
        thread.join(timeout=1.0)
