"""django-q2 entry points. They take ids only (async_task swallows keyword arguments
such as `timeout` or `group`) and leave the real work to `jobs.pipeline`."""

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task

# Housekeeping schedules run on their own queue (see `route_schedules`).
HOUSEKEEPING_SCHEDULES = ("jobs.sweep", "purge-expired-files")


def send(func: str, *args, queue: str) -> None:
    """Queue `func(*args)` on one of the queues by kind (settings.TASK_QUEUES)."""
    async_task(func, *args, cluster=settings.TASK_QUEUES[queue])


def _after_commit(func: str, job_ids, queue: str) -> None:
    ids = list(job_ids)

    def go():
        for job_id in ids:
            send(func, job_id, queue=queue)

    transaction.on_commit(go)


def route_schedules(**kwargs) -> int:
    """Point the housekeeping schedules at the housekeeping queue's cluster: only its
    scheduler then runs them, and their tasks wait behind no job. Run after every
    migrate (the queue's name comes from the environment)."""
    from django_q.models import Schedule

    return (
        Schedule.objects.filter(name__in=HOUSEKEEPING_SCHEDULES)
        .exclude(cluster=settings.TASK_QUEUES["house"])
        .update(cluster=settings.TASK_QUEUES["house"])
    )


def enqueue_submit(job_ids, mark=True) -> None:
    """Queue submission once the surrounding transaction has committed."""
    if mark:
        from jobs.models import Job

        Job.objects.filter(pk__in=job_ids).update(enqueued_at=timezone.now())
    _after_commit("jobs.tasks.submit_job", job_ids, "submit")


def enqueue_finish(job_id: int, mark=True) -> None:
    """Queue the download once the surrounding transaction has committed; `enqueued_at`
    says since when its task may be waiting in the broker (jobs.recovery)."""
    if mark:
        from jobs.models import Job

        Job.objects.filter(pk=job_id).update(enqueued_at=timezone.now())
    _after_commit("jobs.tasks.finish_job", [job_id], "finish")


def enqueue_poll(job_id: int) -> None:
    # A webhook's confirming poll is quick and leads to a download: the finish queue.
    _after_commit("jobs.tasks.poll_job", [job_id], "finish")


def submit_job(job_id: int) -> None:
    from jobs import pipeline

    pipeline.submit(job_id)


def finish_job(job_id: int) -> None:
    from jobs import pipeline

    pipeline.finish(job_id)


def poll_job(job_id: int) -> None:
    from jobs import tracker

    tracker.poll_now(job_id)


def email_batch(batch: str) -> bool:
    """The "it is done" e-mail of a long batch (queued on the housekeeping queue)."""
    from jobs import notices

    return notices.send_batch_email(batch)


def deliver_webhooks(*delivery_ids: int) -> int:
    """One attempt of each outbound webhook event that is due (housekeeping queue)."""
    from jobs import webhooks_out

    return webhooks_out.deliver(delivery_ids)


def sweep() -> dict:
    from jobs import pipeline

    return pipeline.sweep()


def purge_expired() -> dict:
    """The daily schedule: delete the files past RETENTION_DAYS. A run stops after half
    the task timeout (a timed-out task saves nothing) and queues the next slice."""
    from django.conf import settings

    from jobs import retention
    from jobs.api import idempotency

    report = retention.purge(timezone.now(), time_limit=settings.TASK_TIMEOUT / 2)
    if report.more:
        send("jobs.tasks.purge_expired", queue="house")
    # Idempotency-Keys older than 24 h (the API's creates) go with the same daily run,
    # and so do the content hashes jobs from before reuse never got.
    return {
        **report.as_dict(),
        "idempotency_keys": idempotency.purge(),
        "inputs_hashed": hash_old_inputs(),
    }


def hash_old_inputs() -> int:
    """Hash the originals of old jobs (jobs.reuse.hash_old_inputs) for a quarter of the task
    timeout, and queue the next slice while some are left."""
    from jobs import reuse

    hashed, more = reuse.hash_old_inputs(time_limit=settings.TASK_TIMEOUT / 4)
    if more:
        send("jobs.tasks.hash_old_inputs", queue="house")
    return hashed
