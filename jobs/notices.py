""" "E-mail me when this batch ends": one plain-text e-mail when a long batch is over.

`job_ended()` runs after the commit of every move to a final state (jobs.lifecycle). It
only looks: when the whole batch has ended, took longer than BATCH_EMAIL_AFTER_SECONDS
and someone asked, it queues `send_batch_email` on the housekeeping queue. That task
claims the batch with a BatchEmail row (its batch is unique) and then sends.
"""

import logging
import uuid
from decimal import Decimal

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Count, Max, Min, Q, Sum
from django.urls import reverse

from billing import money
from billing.models import LedgerEntry
from jobs import tasks
from jobs.models import BatchEmail, Job

log = logging.getLogger(__name__)


def job_ended(job_id: int) -> None:
    """Called on commit once a job reached a final state."""
    # A batch is one submission: its jobs all asked, or none did. Most did not: one
    # query for them, on the hot path of every finishing job.
    batch = (
        Job.objects.filter(pk=job_id, email_when_done=True).values_list("batch", flat=True).first()
    )
    if batch is not None and _due(batch) and not BatchEmail.objects.filter(batch=batch).exists():
        # The exists() only saves a task; the unique batch is what prevents a second mail.
        tasks.send("jobs.tasks.email_batch", str(batch), queue="house")


def _due(batch) -> bool:
    """Every job of the batch has ended, one asked for the e-mail, and the batch took
    longer than the setting, from its first job created to its last finished."""
    found = Job.objects.filter(batch=batch).aggregate(
        active=Count("pk", filter=Q(state__in=Job.ACTIVE_STATES)),
        asked=Count("pk", filter=Q(email_when_done=True)),
        first=Min("created_at"),
        last=Max("finished_at"),
    )
    if found["active"] or not found["asked"] or found["last"] is None:
        return False
    took = (found["last"] - found["first"]).total_seconds()
    return took > settings.BATCH_EMAIL_AFTER_SECONDS


def recipient(batch) -> str:
    """The address of the person who asked (a batch is one person's submission)."""
    asked = (
        Job.objects.filter(batch=batch, email_when_done=True)
        .values_list("created_by__email", flat=True)
        .first()
    )
    return asked or ""


def send_batch_email(batch) -> bool:
    """Send the batch's e-mail if it is due and not sent yet. Returns whether it sent.

    At most once, on purpose: the claim (the BatchEmail row) is committed before the mail
    goes out. A crash or an SMTP error after the claim loses this courtesy e-mail; it is
    never sent twice, and no transaction (on SQLite: the database's one write lock) is
    held open while a mail server answers. Sending inside the claim's transaction would
    err the other way: a crash after the server accepted the mail but before the commit
    would leave no claim, and a retry would send it again."""
    batch = uuid.UUID(str(batch))
    to = recipient(batch)
    if not to or not _due(batch):
        return False
    try:
        with transaction.atomic():
            BatchEmail.objects.create(batch=batch, to=to)
    except IntegrityError:
        return False  # already claimed: another task (or a second hook) got there first
    subject, body = message(batch)
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [to])
    except Exception:
        log.exception("the e-mail for batch %s could not be sent", batch)
        return False
    return True


def message(batch) -> tuple[str, str]:
    """The subject and plain-text body: counts, cost, how long it took, the link."""
    jobs = Job.objects.filter(batch=batch)
    found = jobs.aggregate(
        total=Count("pk"),
        succeeded=Count("pk", filter=Q(state=Job.State.SUCCEEDED)),
        failed=Count("pk", filter=Q(state=Job.State.FAILED)),
        canceled=Count("pk", filter=Q(state=Job.State.CANCELED)),
        first=Min("created_at"),
        last=Max("finished_at"),
    )
    charged = LedgerEntry.objects.filter(job__batch=batch, kind=LedgerEntry.Kind.CHARGE)
    real = charged.filter(sandbox=False).aggregate(s=Sum("amount"))["s"] or Decimal(0)
    sandbox = charged.filter(sandbox=True).aggregate(s=Sum("amount"))["s"] or Decimal(0)
    total = found["total"]
    counts = outcome_words(found["succeeded"], found["failed"], found["canceled"])
    minutes = round((found["last"] - found["first"]).total_seconds() / 60)
    link = f"{settings.PUBLIC_BASE_URL}{reverse('jobs:history')}?batch={batch}"
    lines = [
        f"Your batch of {total} job{'' if total == 1 else 's'} has ended: {counts}.",
        "",
        f"Cost: {money.usd(real)}",
    ]
    if sandbox:
        lines.append(f"Sandbox (not billed): {money.usd(sandbox)}")
    lines += [
        f"Took: about {minutes} minute{'' if minutes == 1 else 's'}",
        "",
        f"See the results: {link}",
        "",
        "You asked for this e-mail when you uploaded the images.",
    ]
    subject = f"Your {total} upscale job{'' if total == 1 else 's'} finished: {counts}"
    return subject, "\n".join(lines) + "\n"


def outcome_words(succeeded: int, failed: int, canceled: int) -> str:
    """ "2 succeeded, 1 failed": only the outcomes that happened."""
    parts = [
        f"{n} {word}"
        for n, word in ((succeeded, "succeeded"), (failed, "failed"), (canceled, "canceled"))
        if n
    ]
    return ", ".join(parts) or "nothing ran"
