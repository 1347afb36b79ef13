"""'Keep this one': the result a person chose among a batch's results for one image.

One kept result per image of a batch: keeping one un-keeps the others of that image, in
the same transaction, so two people choosing at once still leave a single choice."""

from django.db import transaction

from jobs.models import Job


class NotKeepable(Exception):
    """Only a result that exists (a succeeded job) can be chosen."""


def same_image(job: Job):
    """The jobs of the job's batch made from the same input (the job included). Jobs
    whose files expired lost their file name: then the image as the page describes it,
    as the compare page groups them."""
    jobs = Job.objects.filter(batch=job.batch)
    if job.input_file.name:
        return jobs.filter(input_file=job.input_file.name)
    return jobs.filter(
        input_name=job.input_name, input_width=job.input_width, input_height=job.input_height
    )


def keep(job: Job, user, wanted: bool | None = None) -> bool:
    """Mark `job` as the kept result of its image (wanted=True), un-mark it (False), or
    flip it (None: a second press undoes the first). Returns whether it is kept now."""
    with transaction.atomic():
        # Locked (PostgreSQL; SQLite holds the write lock from BEGIN): two presses at once
        # cannot both read "not kept" and leave two kept results.
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.state != Job.State.SUCCEEDED:
            raise NotKeepable("Only a finished result can be kept.")
        if job.files_expired_at and (wanted is None or wanted):
            raise NotKeepable("This result's files were deleted: there is nothing to keep.")
        wanted = not job.kept if wanted is None else wanted
        if wanted:
            same_image(job).exclude(pk=job.pk).filter(kept=True).update(kept=False, kept_by=None)
            Job.objects.filter(pk=job.pk).update(kept=True, kept_by=user)
        else:
            Job.objects.filter(pk=job.pk).update(kept=False, kept_by=None)
    return wanted
