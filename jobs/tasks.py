"""django-q2 entry points. They take ids only (async_task swallows keyword arguments
such as `timeout` or `group`) and leave the real work to `jobs.pipeline`."""

from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task


def enqueue_submit(job_ids: list[int]) -> None:
    """Queue submission once the surrounding transaction has committed."""
    from jobs.models import Job

    Job.objects.filter(pk__in=job_ids).update(enqueued_at=timezone.now())

    def send():
        for job_id in job_ids:
            async_task("jobs.tasks.submit_job", job_id)

    transaction.on_commit(send)


def submit_job(job_id: int) -> None:
    from jobs import pipeline

    pipeline.submit(job_id)


def sweep() -> dict:
    from jobs import pipeline

    return pipeline.sweep()
