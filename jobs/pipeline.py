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
from jobs import http, imaging, lifecycle
from jobs.models import Job
from jobs.providers import Failed, Finished, ProviderError, Running

log = logging.getLogger(__name__)
State = Job.State

MAX_ERRORS_IN_ROW = 8  # retryable poll/download errors before a job is given up


def run(method, *args):
    """Run one async provider call with a fresh client, from sync code."""

    async def main():
        async with http.client() as client:
            return await method(*args, client)

    return asyncio.run(main())


def later(seconds: float):
    return timezone.now() + timezone.timedelta(seconds=seconds)


# --- submit ---------------------------------------------------------------------------
def submit(job_id: int) -> None:
    if not lifecycle.claim(job_id):
        return  # already claimed, canceled, waiting to retry, or gone
    job = Job.objects.get(pk=job_id)
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
        spent = (timezone.now() - job.created_at).total_seconds()
        if job.attempts < settings.SUBMIT_MAX_ATTEMPTS and spent < settings.RETRY_BUDGET_SECONDS:
            delay = http.backoff(job.attempts, err.retry_after)
            lifecycle.retry_later(
                job.pk,
                delay,
                f"{err.message} Trying again in {delay:.0f} s "
                f"(attempt {job.attempts + 1} of {settings.SUBMIT_MAX_ATTEMPTS}).",
            )
            return
        lifecycle.fail(
            job.pk,
            [State.SUBMITTING],
            err.code,
            f"{err.message} We tried {job.attempts} times and gave up; nothing was charged.",
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
        )
    elif isinstance(result, Failed):
        lifecycle.fail(job.pk, [frm], result.code, result.message)
    elif isinstance(result, Finished):
        fields = {"result_url": result.url, "next_poll_at": None, "errors_in_row": 0}
        if result.task_id:
            fields["provider_task_id"] = result.task_id
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
                next_poll_at=later(delay), poll_count=F("poll_count") + 1, errors_in_row=0
            )


def poll_failed(job: Job, err: ProviderError) -> None:
    if err.retryable and job.errors_in_row + 1 < MAX_ERRORS_IN_ROW:
        delay = http.backoff(job.errors_in_row + 1, err.retry_after, cap=30)
        changed = Job.objects.filter(pk=job.pk, state=State.RUNNING).update(
            next_poll_at=later(delay), errors_in_row=F("errors_in_row") + 1
        )
        if changed and job.errors_in_row == 0:
            lifecycle.note(
                job.pk, State.RUNNING, f"Checking on the job failed: {err.message} Retrying."
            )
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
    """Download the result of a job in `fetching` and store it."""
    job = Job.objects.filter(pk=job_id, state=State.FETCHING).first()
    if job is None:
        return
    provider = job.provider_obj
    try:
        data = _download(job, provider)
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
            # The link expired before we got to it: ask the provider for a fresh one.
            fresh = await provider.poll(job, client)
            if not isinstance(fresh, Finished) or not fresh.url or fresh.url == job.result_url:
                raise ProviderError(
                    "result_expired",
                    f"The result link from {provider.name} expired before we could download "
                    "it, and no fresh link was available.",
                ) from None
            return await http.download(
                client, fresh.url, allowed_hosts=provider.result_hosts(), who=provider.name
            )

    async def main():
        async with http.client() as client:
            return await go(client)

    return asyncio.run(main())


def fetch_failed(job: Job, err: ProviderError) -> None:
    if err.retryable and job.errors_in_row + 1 < MAX_ERRORS_IN_ROW:
        Job.objects.filter(pk=job.pk, state=State.FETCHING).update(
            next_poll_at=later(http.backoff(job.errors_in_row + 1, err.retry_after, cap=30)),
            errors_in_row=F("errors_in_row") + 1,
        )
        return
    lifecycle.fail(job.pk, [State.FETCHING], err.code, err.message)


def store_result(job: Job, data: bytes) -> None:
    try:
        info = imaging.inspect_result(data, settings.MAX_RESULT_PIXELS)
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
    thumb = default_storage.save(
        f"thumbs/{month}/{key}-out.webp", ContentFile(imaging.thumbnail(data))
    )
    moved = lifecycle.move(
        job.pk,
        [State.FETCHING],
        State.SUCCEEDED,
        f"Stored the {info.width}x{info.height} {info.format} result "
        f"({imaging.human_bytes(info.size_bytes)}).",
        output_file=output,
        output_thumb=thumb,
        output_format=info.format,
        output_width=info.width,
        output_height=info.height,
        output_bytes=info.size_bytes,
        result_url="",
    )
    if not moved:  # canceled, or another worker stored it first: keep nothing
        default_storage.delete(output)
        default_storage.delete(thumb)


# --- cancel ----------------------------------------------------------------------------------
def cancel(job: Job, by) -> bool:
    provider = job.provider_obj
    said = ""
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
    return lifecycle.cancel(job, by=by, provider_said=said)


# --- the safety net ----------------------------------------------------------------------------
def sweep() -> dict:
    """Requeue forgotten jobs, stop ones stuck mid-submit, and run one tracker tick in
    case no tracker process is running."""
    from jobs import tasks, tracker

    now = timezone.now()
    stale_queue = Job.objects.filter(
        state=State.QUEUED,
        next_poll_at__isnull=True,
        enqueued_at__lt=now - timezone.timedelta(minutes=5),
    ).values_list("pk", flat=True)
    requeued = list(stale_queue[:500])
    if requeued:
        tasks.enqueue_submit(requeued)

    deadline = now - timezone.timedelta(seconds=settings.SUBMIT_DEADLINE_SECONDS)
    stuck = Job.objects.filter(state=State.SUBMITTING, submitted_at__lt=deadline)
    unknown = 0
    for job_id in stuck.values_list("pk", flat=True):
        # Resending could charge twice, so an unconfirmed submit is failed instead.
        unknown += lifecycle.fail(
            job_id,
            [State.SUBMITTING],
            "unknown",
            "The worker stopped while handing this job over, and we cannot tell whether "
            "the provider received it. It was stopped rather than sent twice; run it "
            "again if you still need it.",
        )
    stuck_fetch = Job.objects.filter(
        state=State.FETCHING, updated_at__lt=deadline, next_poll_at__isnull=True
    )
    for job in stuck_fetch:
        if job.result_url:
            tasks.enqueue_finish(job.pk)  # the download can simply be tried again
        else:
            unknown += lifecycle.fail(
                job.pk,
                [State.FETCHING],
                "interrupted",
                "The worker stopped while storing the result. Run the job again.",
            )
    tracker.Tracker().tick()
    released = ledger.reconcile()
    return {"requeued": len(requeued), "stopped": unknown, "released": released}
