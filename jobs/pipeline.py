"""What the worker does with a job: submit it, act on the provider's answer, store the
result. Plain functions; `jobs.tasks` only wraps them for django-q2."""

import logging
import uuid

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from jobs import imaging, lifecycle
from jobs.models import Job
from jobs.providers import Failed, Finished, ProviderError, Running

log = logging.getLogger(__name__)
State = Job.State

# Results we keep are decoded like uploads; a provider may return up to ~100 MP (fal).
MAX_RESULT_PIXELS = 150_000_000


def submit(job_id: int) -> None:
    if not lifecycle.claim(job_id):
        return  # already claimed, canceled, or gone: a redelivered task does nothing
    job = Job.objects.get(pk=job_id)
    try:
        result = job.provider_obj.submit(job)
    except ProviderError as err:
        lifecycle.fail(job_id, [State.SUBMITTING], err.code, err.message)
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


def apply(job: Job, result, frm: str) -> None:
    """Act on a provider answer, moving only forward from `frm`."""
    if isinstance(result, Running):
        lifecycle.move(
            job.pk,
            [frm],
            State.RUNNING,
            result.detail or "The provider accepted the job.",
            provider_task_id=result.task_id,
            next_poll_at=timezone.now(),
        )
    elif isinstance(result, Failed):
        lifecycle.fail(job.pk, [frm], result.code, result.message)
    elif isinstance(result, Finished):
        if not lifecycle.move(job.pk, [frm], State.FETCHING, "The provider finished."):
            return
        store_result(job, result)


def store_result(job: Job, result: Finished) -> None:
    data = result.content
    try:
        info = imaging.inspect_result(data, MAX_RESULT_PIXELS)
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
    )
    if not moved:  # canceled while we were storing: keep nothing
        default_storage.delete(output)
        default_storage.delete(thumb)


def sweep() -> dict:
    """Safety net for lost work: requeue forgotten jobs, stop ones stuck mid-submit."""
    from jobs import tasks

    now = timezone.now()
    stale_queue = Job.objects.filter(
        state=State.QUEUED, enqueued_at__lt=now - timezone.timedelta(minutes=5)
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
        state=State.FETCHING, updated_at__lt=deadline, provider_task_id=""
    )
    for job_id in stuck_fetch.values_list("pk", flat=True):
        unknown += lifecycle.fail(
            job_id,
            [State.FETCHING],
            "interrupted",
            "The worker stopped while storing the result. Run the job again.",
        )
    return {"requeued": len(requeued), "stopped": unknown}
