"""Recovery by lease: work lost with a worker or a whole cluster, found from the jobs' own
rows by the tracker on every tick (at most once a second), and by the minute sweep as a
safety net. Every query here is on an index: (state, lease_expires_at) or (state,
next_poll_at).

- `submitting`, lease run out: the worker died mid-submit. `local` (our own worker,
  nothing sent anywhere, free) is run again. An HTTP provider is never sent the job blind
  a second time: one that can look its tasks up (`Provider.find_task`) is asked, and the
  job carries on with the task found, or stops as not received; any other provider's job
  stops as "unknown" (billing keeps its hold as possibly billed).
- `fetching`, lease run out: the worker died mid-download. Downloads are idempotent (only
  the first store wins its conditional move), so the download is handed out again.
- `queued` (or `fetching`, waiting for its download task) handed to the broker a while
  ago and no longer possibly waiting there: its task was lost with a cluster (Redis'
  BLPOP has no acknowledgement). It is sent again; see `resend_lost` for the rule.

A takeover is a conditional UPDATE like every claim, and a duplicate task is harmless: it
finds nothing to claim. Retaking the same step again and again (a job that kills its
worker every time) stops after RETRY_BUDGET_SECONDS, counted in `retrying_since`.
"""

import logging
from collections import Counter

from django.conf import settings
from django.db import connection, transaction
from django.db.models import DateTimeField, F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from jobs import leases, lifecycle, pipeline, tasks
from jobs.models import Job
from jobs.providers import ProviderError, Running

log = logging.getLogger(__name__)
State = Job.State
BATCH = 200  # jobs taken over or re-sent per kind and round
UNKNOWN = (
    "The worker stopped while handing this job over, and we cannot tell whether the "
    "provider received it. It was stopped rather than sent twice; run it again if you "
    "still need it."
)


def run(tracker) -> Counter:
    """One round. `tracker` lends its lease owner, its HTTP client (for lookups) and its
    broker connection. Returns counts: requeued (sent again, resumed or handed out again)
    and stopped (failed rather than risk a second charge)."""
    counts = Counter()
    now = timezone.now()
    take_over_submits(tracker, now, counts)
    take_over_downloads(now, counts)
    resend_lost(tracker, now, counts, State.QUEUED, "submit")
    resend_lost(tracker, now, counts, State.FETCHING, "finish")
    return counts


def _take_over(state: str, expired: Q, fields: dict) -> list[Job]:
    """Jobs in `state` whose lease ran out, taken with one conditional UPDATE (SKIP
    LOCKED on PostgreSQL, so several trackers share them; SQLite's write lock, taken at
    BEGIN, lines them up)."""
    if not Job.objects.filter(state=state).filter(expired).exists():
        return []  # the usual answer, read without taking SQLite's write lock
    with transaction.atomic():
        found = Job.objects.filter(state=state).filter(expired).order_by("lease_expires_at")
        if connection.vendor == "postgresql":
            found = found.select_for_update(skip_locked=True, of=("self",))
        jobs = list(found[:BATCH])
        if jobs:
            Job.objects.filter(pk__in=[j.pk for j in jobs], state=state).filter(expired).update(
                **fields
            )
    return jobs


def _retrying_since(now):
    return Coalesce(F("retrying_since"), Value(now, output_field=DateTimeField()))


def _spent(job: Job, now) -> float:
    return (now - (job.retrying_since or now)).total_seconds()


# --- submits ---------------------------------------------------------------------------------
def take_over_submits(tracker, now, counts: Counter) -> None:
    lease = timezone.timedelta(seconds=settings.SUBMIT_LEASE_SECONDS)
    # Claims made before leases existed have none: their submit time says the same.
    expired = Q(lease_expires_at__lt=now) | Q(
        lease_expires_at__isnull=True, submitted_at__lt=now - lease
    )
    jobs = _take_over(
        State.SUBMITTING,
        expired,
        {
            "lease_owner": tracker.owner,
            "lease_expires_at": now + lease,
            "retrying_since": _retrying_since(now),
        },
    )
    asks = []
    for job in jobs:
        job.retrying_since = job.retrying_since or now
        provider = job.provider_obj
        if provider.runs_on_worker:
            counts.update(run_again(job, now))
        elif provider.supports_lookup:
            asks.append(job)
        else:
            counts["stopped"] += lifecycle.fail(job.pk, [State.SUBMITTING], "unknown", UNKNOWN)
    if asks:
        for job, outcome in zip(asks, tracker.lookup(asks), strict=True):
            counts.update(after_lookup(tracker, job, outcome, now))


def run_again(job: Job, now) -> dict:
    """`local`: nothing left our worker, so the upscale simply runs again."""
    if _spent(job, now) >= settings.RETRY_BUDGET_SECONDS:
        stopped = lifecycle.fail(
            job.pk,
            [State.SUBMITTING],
            "interrupted",
            "The worker kept stopping while upscaling this job "
            f"(for {pipeline.human_seconds(_spent(job, now))}): it may be too large to "
            "finish within the task time limit. Try a smaller scale or image.",
        )
        return {"stopped": stopped}
    moved = lifecycle.move(
        job.pk,
        [State.SUBMITTING],
        State.QUEUED,
        "The worker stopped while upscaling this job; starting it again.",
        next_poll_at=None,
        enqueued_at=now,
        retrying_since=job.retrying_since,
        **leases.RELEASED,
    )
    if moved:
        tasks.enqueue_submit([job.pk], mark=False)
    return {"requeued": moved}


def after_lookup(tracker, job: Job, outcome, now) -> dict:
    """Act on what the provider said about a job whose submit was interrupted."""
    name = job.provider_obj.name
    if isinstance(outcome, ProviderError):
        if outcome.retryable:
            delay, _since = pipeline.next_retry(job, outcome, job.errors_in_row + 1)
            if delay is not None:
                # Ask again when this lease (the tracker's) runs out.
                Job.objects.filter(
                    pk=job.pk, state=State.SUBMITTING, lease_owner=tracker.owner
                ).update(
                    lease_expires_at=pipeline.later(delay), errors_in_row=F("errors_in_row") + 1
                )
                return {}
        message = (
            f"The worker stopped while handing this job over, and asking {name} whether it "
            f"arrived failed ({outcome.message}). It was stopped rather than sent twice; "
            "run it again if you still need it."
        )
        return {"stopped": lifecycle.fail(job.pk, [State.SUBMITTING], "unknown", message)}
    if outcome is None:
        message = (
            f"The worker stopped before this job reached {name}: {name} has no record of "
            "it, so nothing was charged. Run it again if you still need it."
        )
        return {"stopped": lifecycle.fail(job.pk, [State.SUBMITTING], "not_received", message)}
    if isinstance(outcome, Running):
        outcome = Running(
            outcome.task_id,
            detail=f"The worker stopped while handing this job over; we asked {name} and "
            f"found it (id {outcome.task_id}), so it carries on without being sent again.",
        )
    pipeline.apply(job, outcome, frm=State.SUBMITTING)
    return {"requeued": 1}


# --- downloads ---------------------------------------------------------------------------------
def take_over_downloads(now, counts: Counter) -> None:
    jobs = _take_over(
        State.FETCHING,
        Q(lease_expires_at__lt=now),
        {
            **leases.RELEASED,
            "next_poll_at": None,
            "enqueued_at": now,
            "retrying_since": _retrying_since(now),
        },
    )
    for job in jobs:
        job.retrying_since = job.retrying_since or now
        if _spent(job, now) >= settings.RETRY_BUDGET_SECONDS:
            counts["stopped"] += lifecycle.fail(
                job.pk,
                [State.FETCHING],
                "interrupted",
                "The worker kept stopping while storing the result "
                f"(for {pipeline.human_seconds(_spent(job, now))}). Run the job again.",
            )
            continue
        lifecycle.note(
            job.pk, State.FETCHING, "The worker stopped while fetching the result; trying again."
        )
        tasks.enqueue_finish(job.pk, mark=False)
        counts["requeued"] += 1


# --- lost tasks -----------------------------------------------------------------------------------
def resend_lost(tracker, now, counts: Counter, state: str, queue: str) -> None:
    """Send again the tasks of waiting jobs that can be nowhere in the broker.

    A waiting job (queued, or fetching with nobody downloading: each has its own queue)
    was handed to the broker at `enqueued_at`. If its queue holds N tasks, they are the
    N most recently handed over (a FIFO list), so at most the N most recently handed-
    over waiting jobs can still be in it: any older one, handed over more than
    REQUEUE_AFTER_SECONDS ago (time for a cluster to start it), lost its task. When the
    broker is empty (N = 0) that is every such job; while 500 submits legitimately wait
    in Redis, it is none of them, so a busy broker gets no duplicates. Those that slip
    through (a task sitting in a cluster's small local queue) find nothing to claim, and
    are not sent again for another REQUEUE_AFTER_SECONDS."""
    cutoff = now - timezone.timedelta(seconds=settings.REQUEUE_AFTER_SECONDS)
    waiting = Job.objects.filter(state=state, next_poll_at__isnull=True, lease_owner="")
    old = Q(enqueued_at__lt=cutoff) | Q(enqueued_at__isnull=True)
    if not waiting.filter(old).exists():  # the usual answer, from the index alone
        return
    backlog = tracker.backlog(queue)
    if backlog is None:
        return  # the broker cannot be reached: nothing could be sent anyway
    may_be_in_broker = max(backlog - waiting.exclude(old).count(), 0) if backlog else 0
    with transaction.atomic():
        lost = waiting.filter(old).order_by(F("enqueued_at").desc(nulls_last=True), "-pk")
        if connection.vendor == "postgresql":
            lost = lost.select_for_update(skip_locked=True, of=("self",))
        jobs = list(lost[may_be_in_broker : may_be_in_broker + BATCH])
        if jobs:
            waiting.filter(old, pk__in=[j.pk for j in jobs]).update(enqueued_at=now)
    if not jobs:
        return
    submits = [j.pk for j in jobs if j.state == State.QUEUED]
    if submits:
        tasks.enqueue_submit(submits, mark=False)
    for job in jobs:
        if job.state == State.FETCHING:
            tasks.enqueue_finish(job.pk, mark=False)
    log.warning(
        "sent again %d task(s) lost from the broker (jobs %s)",
        len(jobs),
        ", ".join(str(j.pk) for j in jobs[:20]),
    )
    counts["requeued"] += len(jobs)
