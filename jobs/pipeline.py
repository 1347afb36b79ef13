"""What the worker and the tracker do with a job: submit it, act on the provider's
answers, download and store the result. Plain functions; `jobs.tasks` wraps them for
django-q2 and `jobs.tracker` drives the polling.

No function here sleeps: a wait (retry delay, next poll) is a time in `next_poll_at`
that the tracker acts on."""

import asyncio
import logging
import uuid

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db.models import F
from django.utils import timezone

from billing import ledger
from jobs import http, imaging, leases, lifecycle
from jobs.models import Job
from jobs.providers import Failed, Finished, ProviderError, Running

log = logging.getLogger(__name__)
State = Job.State

# Retryable poll/download errors in a row before a job is given up: only a safety cap,
# as RETRY_BUDGET_SECONDS ends a run of errors first (about 15-25 errors at the default
# backoff).
MAX_ERRORS_IN_ROW = 40
MIN_RETRY_WAIT = 1.0  # seconds: less budget left than this is no budget


def run(method, *args):
    """Run one async provider call with a fresh client, from sync code."""

    async def main():
        async with http.client() as client:
            return await method(*args, client)

    return asyncio.run(main())


def later(seconds: float):
    return timezone.now() + timezone.timedelta(seconds=seconds)


def human_seconds(seconds: float) -> str:
    return f"{round(seconds / 60)} minutes" if seconds >= 90 else f"{round(seconds)} s"


def next_retry(job: Job, err: ProviderError, attempt: int) -> tuple[float | None, object]:
    """(delay, retrying_since) for the next retry of a retryable error: exponential
    backoff with jitter from `http.backoff`, capped at RETRY_MAX_DELAY, never sooner than
    the provider's Retry-After, and the last one cut to end with RETRY_BUDGET_SECONDS
    (counted from the first failure of the run). The delay is None once the budget is
    spent, or when Retry-After asks for longer than what is left of it."""
    now = timezone.now()
    since = job.retrying_since or now
    left = settings.RETRY_BUDGET_SECONDS - (now - since).total_seconds()
    if left < max(err.retry_after or 0.0, MIN_RETRY_WAIT):
        return None, since
    delay = http.backoff(attempt, err.retry_after, cap=settings.RETRY_MAX_DELAY)
    return min(delay, left), since


def tried_for(job: Job) -> str:
    since = job.retrying_since or timezone.now()
    return human_seconds((timezone.now() - since).total_seconds())


# --- submit ---------------------------------------------------------------------------
def submit(job_id: int) -> None:
    owner = leases.new_owner()
    if not lifecycle.claim(job_id, owner):
        return  # already claimed, canceled, waiting to retry, or gone
    with leases.kept(job_id, owner, settings.SUBMIT_LEASE_SECONDS):
        _submit(Job.objects.get(pk=job_id))


def _submit(job: Job) -> None:
    job_id = job.pk
    try:
        result = run(job.provider_obj.submit, job)
    except ProviderError as err:
        submit_failed(job, err)
        return
    except Exception:
        log.exception("submit of job %s crashed", job_id)
        lifecycle.fail(
            job_id,
            [State.SUBMITTING],
            "internal_error",
            "Something went wrong on our side while starting this job. It was not charged.",
        )
        return
    apply(job, result, frm=State.SUBMITTING)


def submit_failed(job: Job, err: ProviderError) -> None:
    name = job.provider_obj.name
    if err.retryable and err.maybe_received:
        # Sent, but no answer: resending could run (and charge) the job twice.
        lifecycle.fail(
            job.pk,
            [State.SUBMITTING],
            "submit_unknown",
            f"{err.message} We cannot tell whether {name} received the job, so it was not "
            "sent again (that could charge twice). Run it again if you still need it.",
        )
        return
    if err.retryable:
        cap = settings.SUBMIT_MAX_ATTEMPTS
        delay, since = next_retry(job, err, job.attempts)
        if delay is not None and job.attempts < cap:
            budget = human_seconds(settings.RETRY_BUDGET_SECONDS)
            lifecycle.retry_later(
                job.pk,
                delay,
                f"{err.message} Trying again in {delay:.0f} s (attempt {job.attempts + 1} "
                f"of {cap} at most; we keep trying for up to {budget}).",
                retrying_since=since,
            )
            return
        if job.attempts >= cap:
            tried = f"We tried {job.attempts} times"
        else:
            tried = f"We kept trying for {tried_for(job)} ({job.attempts} attempts)"
        lifecycle.fail(
            job.pk,
            [State.SUBMITTING],
            err.code,
            f"{err.message} {tried} and gave up; nothing was charged.",
        )
        return
    lifecycle.fail(job.pk, [State.SUBMITTING], err.code, err.message)


# --- acting on an answer ----------------------------------------------------------------
def apply(job: Job, result, frm: str) -> None:
    """Act on a provider answer, moving only forward from `frm`."""
    provider = job.provider_obj
    if isinstance(result, Running):
        if frm == State.RUNNING:
            Job.objects.filter(pk=job.pk, state=State.RUNNING).update(
                next_poll_at=later(provider.poll_delay(job.poll_count)),
                poll_count=F("poll_count") + 1,
                errors_in_row=0,
                retrying_since=None,
            )
            return
        lifecycle.move(
            job.pk,
            [frm],
            State.RUNNING,
            result.detail or f"{provider.name} accepted the job (id {result.task_id}).",
            provider_task_id=result.task_id,
            next_poll_at=later(provider.first_poll_delay()),
            errors_in_row=0,
            retrying_since=None,
            **leases.RELEASED,  # a running job is the tracker's: polled, not leased
        )
    elif isinstance(result, Failed):
        lifecycle.fail(job.pk, [frm], result.code, result.message)
    elif isinstance(result, Finished):
        fields = {
            "result_url": result.url,
            "next_poll_at": None,
            "errors_in_row": 0,
            "retrying_since": None,
        }
        if result.task_id:
            fields["provider_task_id"] = result.task_id
        if result.content:
            # Bytes in hand are stored now, by whoever holds them: under the submit's
            # lease (renewed by it), so no download task takes the job meanwhile.
            fields["lease_owner"] = job.lease_owner or leases.new_owner()
            fields["lease_expires_at"] = leases.until(settings.FETCH_LEASE_SECONDS)
        else:
            fields.update(leases.RELEASED)  # the download task claims its own lease
        if not lifecycle.move(
            job.pk, [frm], State.FETCHING, f"{provider.name} finished the job.", **fields
        ):
            return
        if result.content:
            store_result(job, result.content)
        else:
            from jobs import tasks

            tasks.enqueue_finish(job.pk)


def reschedule(jobs: list[Job]) -> None:
    """Still running at the provider: poll again later. Jobs at the same point of the
    backoff share one UPDATE."""
    by_count = {}
    for job in jobs:
        by_count.setdefault(job.poll_count, []).append(job)
    for count, group in by_count.items():
        by_delay = {}
        for job in group:
            by_delay.setdefault(job.provider_obj.poll_delay(count), []).append(job.pk)
        for delay, ids in by_delay.items():
            Job.objects.filter(pk__in=ids, state=State.RUNNING).update(
                next_poll_at=later(delay),
                poll_count=F("poll_count") + 1,
                errors_in_row=0,
                retrying_since=None,
            )


def poll_failed(job: Job, err: ProviderError) -> None:
    if err.retryable:
        delay, since = next_retry(job, err, job.errors_in_row + 1)
        if delay is not None and job.errors_in_row + 1 < MAX_ERRORS_IN_ROW:
            changed = Job.objects.filter(pk=job.pk, state=State.RUNNING).update(
                next_poll_at=later(delay),
                errors_in_row=F("errors_in_row") + 1,
                retrying_since=since,
            )
            if changed and job.errors_in_row == 0:
                lifecycle.note(
                    job.pk, State.RUNNING, f"Checking on the job failed: {err.message} Retrying."
                )
            return
        message = f"{err.message} We kept checking for {tried_for(job)} and gave up."
        lifecycle.fail(job.pk, [State.RUNNING], err.code, message)
        return
    lifecycle.fail(job.pk, [State.RUNNING], err.code, err.message)


def overdue(job: Job) -> bool:
    started = job.submitted_at or job.created_at
    return (timezone.now() - started).total_seconds() > settings.POLL_MAX_SECONDS


def apply_poll(job: Job, outcome) -> None:
    if isinstance(outcome, ProviderError):
        poll_failed(job, outcome)
    elif isinstance(outcome, Running) and overdue(job):
        lifecycle.fail(
            job.pk,
            [State.RUNNING],
            "timeout",
            f"{job.provider_obj.name} did not finish within "
            f"{settings.POLL_MAX_SECONDS // 60} minutes; we stopped waiting.",
        )
    else:
        apply(job, outcome, frm=State.RUNNING)


# --- fetching the result ------------------------------------------------------------------
def finish(job_id: int) -> None:
    """Download the result of a job in `fetching` and store it, under the job's lease."""
    owner = leases.new_owner()
    if not lifecycle.claim_download(job_id, owner):
        return  # being downloaded, waiting out a retry delay, done, or gone
    job = Job.objects.get(pk=job_id)
    if not job.result_url:
        # The result came as bytes to a worker that died before storing them.
        lifecycle.fail(
            job_id,
            [State.FETCHING],
            "interrupted",
            "The worker stopped while storing the result. Run the job again.",
        )
        return
    with leases.kept(job_id, owner, settings.FETCH_LEASE_SECONDS):
        try:
            data = _download(job, job.provider_obj)
        except ProviderError as err:
            fetch_failed(job, err)
            return
        store_result(job, data)


def _download(job: Job, provider) -> bytes:
    async def go(client):
        try:
            return await http.download(
                client, job.result_url, allowed_hosts=provider.result_hosts(), who=provider.name
            )
        except ProviderError as err:
            if err.code != "result_expired" or not job.provider_task_id:
                raise
            # The link expired before we got to it: ask the provider for a fresh one
            # (Pixazo's status, Ximilar, APIXO and fal hand out a new link on each ask).
            fresh = await provider.poll(job, client)
            if not isinstance(fresh, Finished) or not fresh.url:
                raise expired(provider, "no fresh link was available") from None
            if fresh.url == job.result_url:
                raise expired(
                    provider, f"asking {provider.name} again gave the same expired link"
                ) from None
            try:
                return await http.download(
                    client, fresh.url, allowed_hosts=provider.result_hosts(), who=provider.name
                )
            except ProviderError as again:
                if again.code != "result_expired":
                    raise
                raise expired(provider, "the fresh link it gave had expired too") from None

    async def main():
        async with http.client() as client:
            return await go(client)

    return asyncio.run(main())


def expired(provider, why: str) -> ProviderError:
    return ProviderError(
        "result_expired",
        f"The result link from {provider.name} expired before we could download it, and {why}.",
    )


def fetch_failed(job: Job, err: ProviderError) -> None:
    if err.retryable:
        delay, since = next_retry(job, err, job.errors_in_row + 1)
        if delay is not None and job.errors_in_row + 1 < MAX_ERRORS_IN_ROW:
            # The lease goes with the retry: the tracker hands the download out again
            # when the delay is over (jobs.tracker.claim_due).
            Job.objects.filter(pk=job.pk, state=State.FETCHING).update(
                next_poll_at=later(delay),
                errors_in_row=F("errors_in_row") + 1,
                retrying_since=since,
                **leases.RELEASED,
            )
            return
        message = f"{err.message} We kept trying for {tried_for(job)} and gave up."
        lifecycle.fail(job.pk, [State.FETCHING], err.code, message)
        return
    lifecycle.fail(job.pk, [State.FETCHING], err.code, err.message)


def store_result(job: Job, data: bytes) -> None:
    """Store a result, measured but not decoded: nothing heavy on the way to `succeeded`
    (its thumbnail is made the first time someone looks: `output_thumb`)."""
    try:
        info = imaging.measure_result(data, settings.MAX_RESULT_PIXELS)
    except imaging.ImageRefused as refusal:
        lifecycle.fail(
            job.pk,
            [State.FETCHING],
            "bad_result",
            f"The provider returned something we could not use: {refusal.message}",
        )
        return
    key = uuid.uuid4().hex
    month = timezone.now().strftime("%Y/%m")
    output = default_storage.save(f"outputs/{month}/{key}.{info.extension}", ContentFile(data))
    moved = lifecycle.move(
        job.pk,
        [State.FETCHING],
        State.SUCCEEDED,
        f"Stored the {info.width}x{info.height} {info.format} result "
        f"({imaging.human_bytes(info.size_bytes)}).",
        output_file=output,
        output_format=info.format,
        output_width=info.width,
        output_height=info.height,
        output_bytes=info.size_bytes,
        result_url="",
    )
    if not moved:  # canceled, or another worker stored it first: keep nothing
        default_storage.delete(output)


def output_thumb(job: Job) -> str:
    """The stored name of the result's thumbnail, made (once) the first time it is asked
    for. Two requests racing both make one; the first to record it wins and the other's
    file is deleted."""
    if job.output_thumb:
        return job.output_thumb.name
    with job.output_file.open("rb") as stream:
        data = imaging.thumbnail(stream)
    name = default_storage.save(
        job.output_file.name.replace("outputs/", "thumbs/", 1).rsplit(".", 1)[0] + "-out.webp",
        ContentFile(data),
    )
    if Job.objects.filter(pk=job.pk, output_thumb="").update(output_thumb=name):
        return name
    default_storage.delete(name)
    return Job.objects.values_list("output_thumb", flat=True).get(pk=job.pk)


# --- cancel ----------------------------------------------------------------------------------
def cancel(job: Job, by) -> bool:
    provider = job.provider_obj
    said, stopped = "", False
    if job.state == State.RUNNING and job.provider_task_id:
        if provider.supports_cancel:
            try:
                stopped = run(provider.cancel, job)
            except ProviderError as err:
                stopped = False
                said = f"Asking {provider.name} to stop failed ({err.message})."
            if stopped:
                said = f"{provider.name} confirmed it stopped the task."
            elif not said:
                said = f"{provider.name} could not stop the task any more; its result is discarded."
        else:
            said = (
                f"{provider.name} offers no way to stop a started task: it may still "
                "finish (and charge) on their side; its result is discarded."
            )
    # Unless the provider confirmed the stop, it may still bill the job: the ledger keeps
    # the hold open as possibly billed.
    return lifecycle.cancel(job, by=by, provider_said=said, provider_stopped=bool(stopped))


# --- the safety net ----------------------------------------------------------------------------
def sweep() -> dict:
    """The minute's safety net: one tracker tick (which also takes over expired leases
    and re-sends lost tasks: jobs.recovery) in case no tracker process is running, and
    the ledger's reconciliation."""
    from jobs import tracker

    ticker = tracker.Tracker()
    try:
        ticker.tick()
        recovered = ticker.recovered
    finally:
        ticker.close()
    released = ledger.reconcile()
    # Outbound webhooks whose retry delay is over (or whose first task was lost).
    from jobs import webhooks_out

    webhooks_out.deliver_due()
    return {
        "requeued": recovered["requeued"],
        "stopped": recovered["stopped"],
        "released": released,
    }
