"""Possibly billed: work a provider may have done (and will bill) that we could not finish.

When such a job ends, its hold is not released: it stays open, counted in the budget's
"held", and the job is marked `possibly_billed` until an admin checks the provider's
account and resolves it as charged (a charge row plus the release) or not billed (the
release), with a reason. The rule that decides it is `possibly_billed()`, the only place
that knows which endings are exposed.
"""

from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from billing.models import LedgerEntry
from billing.money import usd

POSSIBLY_BILLED = "possibly_billed"  # jobs.Job.Billing values (jobs imports billing)
CHARGED = "charged"
NOT_BILLED = "not_billed"
DECISIONS = {CHARGED: "charged", NOT_BILLED: "not billed"}

# A submit that was sent but never answered in a way we could trust: the provider may
# have taken the job (the task id was never saved, so nobody will poll it).
# `bad_answer`: a 2xx answer we could not read (e.g. no task id), so it may have been taken.
SUBMIT_OUTCOME_UNKNOWN = frozenset({"unknown", "submit_unknown", "bad_answer"})
# We stopped watching a running job (our deadline, or polls that kept failing until we
# gave up); the provider may still finish it, and bill it.
# `no_result`: the provider said it finished but gave no result link: done, and billed.
STOPPED_WAITING = frozenset(
    {
        "timeout",
        "unreachable",
        "connection_error",
        "rate_limited",
        "throttled",
        "provider_error",
        "server_error",
        "no_result",
    }
)


def possibly_billed(job, frm: str, provider_stopped: bool = False) -> bool:
    """Did `job` end (failed or canceled, out of state `frm`) where the provider may have
    done the work? A job that costs nothing, or runs on our own worker, never is."""
    from jobs.providers import PROVIDER_CLASSES

    if job.quoted_amount <= 0:
        return False
    if getattr(PROVIDER_CLASSES.get(job.provider), "runs_on_worker", False):
        return False
    if job.state == "failed":
        if frm == "fetching":  # the provider finished: the download or the result failed
            return True
        if frm == "submitting":
            return job.error_code in SUBMIT_OUTCOME_UNKNOWN
        if frm == "running":
            return job.error_code in STOPPED_WAITING
    if job.state == "canceled":
        if frm in ("submitting", "fetching"):  # handed over already, or finished there
            return True
        if frm == "running":
            return not provider_stopped
    return False


def state_before_end(job) -> str:
    """The state a job ended from, read from its timeline (for callers that were not
    told, like the reconciler): the last entry before it reached a final state."""
    from jobs.models import Job

    last = (
        job.events.exclude(state__in=Job.FINAL_STATES)
        .order_by("-at", "-pk")
        .values_list("state", flat=True)
        .first()
    )
    return last or ""


def keep_open(job) -> None:
    """Mark the job possibly billed (its hold stays open) and say so on its timeline."""
    from jobs import lifecycle
    from jobs.models import Job

    marked = Job.objects.filter(pk=job.pk, billing_status="").update(billing_status=POSSIBLY_BILLED)
    job.billing_status = POSSIBLY_BILLED
    if marked:
        lifecycle.note(
            job.pk,
            job.state,
            f"Possibly billed: {usd(job.quoted_amount)} stays held. The provider may have "
            "done (and charged for) this job; an admin will check and resolve it.",
        )


class NotResolvable(Exception):
    pass


def resolve(job, *, by, decision: str, reason: str, amount: Decimal | None = None) -> bool:
    """An admin's verdict on a possibly billed job, in one transaction: charged writes a
    charge (the quote, or `amount`) and the release; not billed writes the release. The
    conditional UPDATE is the claim: a second resolution (or a race) changes nothing and
    answers False."""
    from billing import ledger
    from jobs import lifecycle
    from jobs.models import Job

    reason = (reason or "").strip()
    if decision not in DECISIONS:
        raise NotResolvable(f"Unknown decision {decision!r}.")
    if not reason:
        raise NotResolvable("Say why: a reason is required.")
    if amount is not None and amount < 0:
        raise NotResolvable("A charge cannot be negative.")
    now = timezone.now()
    with transaction.atomic():
        changed = Job.objects.filter(pk=job.pk, billing_status=POSSIBLY_BILLED).update(
            billing_status=decision,
            billing_resolved_by=by,
            billing_resolved_at=now,
            billing_resolution=reason,
            updated_at=now,
        )
        if not changed:
            return False
        job.refresh_from_db()
        who = by.get_username() if by is not None else "an admin"
        hold = LedgerEntry.objects.filter(job=job, kind=LedgerEntry.Kind.HOLD).first()
        quoted = hold.amount if hold else job.quoted_amount
        if decision == CHARGED:
            amount = quoted if amount is None else amount
            ledger.charge(
                job,
                amount,
                f"Possibly billed, resolved by {who} as charged: {reason}",
                # The quote's book priced it; an amount the admin typed has no book.
                price_book=hold.price_book if hold and amount == quoted else None,
            )
        ledger.release(
            job, f"Hold released: possibly billed, resolved by {who} as {DECISIONS[decision]}."
        )
        said = f"charged {usd(amount)}" if decision == CHARGED else "not billed"
        lifecycle.note(job.pk, job.state, f"Billing checked by {who}: {said}. Reason: {reason}")
        if decision == CHARGED:
            ledger.warn(job.team)
    return True
