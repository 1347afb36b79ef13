"""The tracker: one loop that keeps every unfinished job moving without parking a worker.

Each tick claims the jobs whose `next_poll_at` has come (SKIP LOCKED on PostgreSQL, so
several trackers share the work), polls the running ones concurrently on one
httpx.AsyncClient, records what changed, and hands resubmits and downloads to
django-q2. `manage.py track` runs it in a loop; the minute schedule runs one tick as a
safety net when no tracker runs.
"""

import asyncio
import logging
import time
from collections import Counter

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import Min
from django.utils import timezone
from django_q.brokers import get_broker

from jobs import http, leases, pipeline, recovery, tasks
from jobs.models import Heartbeat, Job
from jobs.providers import ProviderError, Running

log = logging.getLogger(__name__)
State = Job.State
LEASE_SECONDS = 60  # a running job claimed for a poll is not claimed again for this long
BATCH = 1000
IDLE_WAIT = 1.0  # at most this long between ticks
ALIVE_WITHIN = timezone.timedelta(seconds=5)  # a heartbeat older than this: no tracker
RECOVER_EVERY = 1.0  # seconds between two recovery rounds (jobs.recovery) of one tracker


def beat() -> None:
    Heartbeat.objects.update_or_create(name="tracker", defaults={"beat_at": timezone.now()})


def is_alive() -> bool:
    return Heartbeat.objects.filter(
        name="tracker", beat_at__gte=timezone.now() - ALIVE_WITHIN
    ).exists()


def claim_due(state: str, limit: int = BATCH) -> list[Job]:
    """Due jobs in `state`, leased to this tracker by pushing next_poll_at ahead."""
    now = timezone.now()
    with transaction.atomic():
        due = Job.objects.filter(state=state, next_poll_at__lte=now).order_by("next_poll_at")
        if connection.vendor == "postgresql":
            due = due.select_for_update(skip_locked=True, of=("self",))
        jobs = list(due[:limit])
        if jobs:
            lease = {"next_poll_at": now + timezone.timedelta(seconds=LEASE_SECONDS)}
            if state in (State.QUEUED, State.FETCHING):
                # Handed to a task, which claims the job itself (lifecycle.claim and
                # claim_download want NULL); from enqueued_at on, a lost task is found
                # by jobs.recovery.
                lease = {"next_poll_at": None, "enqueued_at": now}
            Job.objects.filter(pk__in=[j.pk for j in jobs], state=state).update(**lease)
    return jobs


async def poll_all(jobs: list[Job], client) -> list:
    gate = asyncio.Semaphore(settings.TRACKER_CONCURRENCY)

    async def one(job):
        async with gate:
            try:
                return await job.provider_obj.poll(job, client)
            except ProviderError as err:
                return err
            except Exception as exc:  # a bug must not stop the other polls
                log.exception("poll of job %s crashed", job.pk)
                return ProviderError(
                    "internal_error", f"Checking on the job crashed ({exc}).", retryable=True
                )

    return await asyncio.gather(*(one(job) for job in jobs))


async def find_all(jobs: list[Job], client) -> list:
    """Ask the providers about interrupted submits: a Result, None (no such task), or a
    ProviderError."""
    gate = asyncio.Semaphore(settings.TRACKER_CONCURRENCY)

    async def one(job):
        async with gate:
            try:
                return await job.provider_obj.find_task(job, client)
            except ProviderError as err:
                return err
            except Exception as exc:  # a bug must not stop the other lookups
                log.exception("looking up job %s crashed", job.pk)
                return ProviderError(
                    "internal_error", f"Looking the job up crashed ({exc}).", retryable=True
                )

    return await asyncio.gather(*(one(job) for job in jobs))


class Tracker:
    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.client = None
        self.brokers = {}  # queue kind -> broker
        self.owner = leases.new_owner()  # holds the leases of submits it is resolving
        self.recovered = Counter(requeued=0, stopped=0)
        self._recover_at = 0.0

    def close(self):
        if self.client is not None:
            self.loop.run_until_complete(self.client.aclose())
        self.loop.close()

    def tick(self, budget: float = 2.0) -> float:
        """One round; returns how long to wait before the next.

        Running jobs are polled in chunks of TRACKER_CONCURRENCY, most overdue first, and
        each chunk is recorded before the next is claimed: a job that finishes is noticed
        one chunk later, not one whole sweep later."""
        self.recover()
        for job in claim_due(State.QUEUED):
            tasks.enqueue_submit([job.pk], mark=False)
        for job in claim_due(State.FETCHING):
            tasks.enqueue_finish(job.pk, mark=False)
        deadline = time.monotonic() + budget
        while time.monotonic() < deadline:
            running = claim_due(State.RUNNING, limit=settings.TRACKER_CONCURRENCY)
            if not running:
                break
            self.poll(running)
        return self.wait()

    def recover(self) -> None:
        """Take over expired leases and re-send lost tasks (jobs.recovery), at most once
        every RECOVER_EVERY seconds: cheap, indexed queries, but ticks can come every
        few milliseconds while many polls are due."""
        if time.monotonic() < self._recover_at:
            return
        self._recover_at = time.monotonic() + RECOVER_EVERY
        try:
            self.recovered.update(recovery.run(self))
        except Exception:  # polling goes on; the next round tries again
            log.exception("recovering lost work failed")

    def backlog(self, queue: str = "submit") -> int | None:
        """Tasks waiting in one queue of the broker (LLEN on Redis, a COUNT on the ORM
        broker), or None when it cannot be reached."""
        try:
            if queue not in self.brokers:
                self.brokers[queue] = get_broker(settings.TASK_QUEUES[queue])
            return self.brokers[queue].queue_size()
        except Exception:
            log.warning("could not read the broker's queue size", exc_info=True)
            self.brokers.pop(queue, None)
            return None

    def lookup(self, jobs: list[Job]) -> list:
        return self.loop.run_until_complete(find_all(jobs, self._client()))

    def _client(self):
        if self.client is None:
            self.client = self.loop.run_until_complete(self._make_client())
        return self.client

    def poll(self, jobs: list[Job]) -> None:
        self._client()
        started = time.monotonic()
        outcomes = self.loop.run_until_complete(poll_all(jobs, self.client))
        polled = time.monotonic()
        still = [
            job
            for job, outcome in zip(jobs, outcomes, strict=True)
            if isinstance(outcome, Running) and not pipeline.overdue(job)
        ]
        pipeline.reschedule(still)  # the common case, in a few bulk UPDATEs
        for job, outcome in zip(jobs, outcomes, strict=True):
            if job in still:
                continue
            try:
                pipeline.apply_poll(job, outcome)
            except Exception:
                log.exception("acting on the poll of job %s failed", job.pk)
        log.info(
            "polled %d jobs in %.2f s, recorded in %.2f s",
            len(jobs),
            polled - started,
            time.monotonic() - polled,
        )

    async def _make_client(self):
        return http.client()

    def wait(self) -> float:
        upcoming = Job.objects.filter(
            state__in=[State.QUEUED, State.RUNNING, State.FETCHING], next_poll_at__isnull=False
        ).aggregate(at=Min("next_poll_at"))["at"]
        if upcoming is None:
            return IDLE_WAIT
        return min(max((upcoming - timezone.now()).total_seconds(), 0.02), IDLE_WAIT)

    def run_forever(self, stop=lambda: False):
        try:
            while not stop():
                try:
                    beat()
                    pause = self.tick()
                except Exception:
                    log.exception("tracker tick failed")
                    pause = IDLE_WAIT
                close_old_connections()
                time.sleep(pause)  # the tracker's own loop; no task is parked here
        finally:
            self.close()


def poll_now(job_id: int) -> None:
    """Confirm one job with its provider at once (after a webhook hint)."""
    now = timezone.now()
    claimed = Job.objects.filter(pk=job_id, state=State.RUNNING).update(
        next_poll_at=now + timezone.timedelta(seconds=LEASE_SECONDS)
    )
    if not claimed:
        return
    tracker = Tracker()
    try:
        tracker.poll([Job.objects.get(pk=job_id)])
    finally:
        tracker.close()
