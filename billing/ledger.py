"""Holds, charges and releases: the only code that writes ledger rows.

Every row has an idempotency key (`hold:<job>`, `charge:<job>`, `release:<job>`), so a
retried task or a duplicate webhook writes nothing twice: the unique constraint refuses
the second row. Real spend and sandbox spend are kept apart (`sandbox`); budgets count
real spend only.
"""

import datetime
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef, Q, Sum
from django.utils import timezone

from billing import books, exposure
from billing.models import BudgetWarning, LedgerEntry, Team

Kind = LedgerEntry.Kind
ZERO = Decimal("0.0000")
WARN_AT = (80, 100)  # percent of the monthly budget
POSSIBLY_BILLED = exposure.POSSIBLY_BILLED


def month_start(at=None) -> datetime.datetime:
    at = (at or timezone.now()).astimezone(datetime.UTC)
    return at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(start: datetime.datetime) -> datetime.datetime:
    return (start + datetime.timedelta(days=32)).replace(day=1)


@dataclass(frozen=True)
class Usage:
    team: Team
    budget: Decimal | None
    spent: Decimal  # charges and corrections written this month
    held: Decimal  # every open hold, whenever it was placed (possibly billed ones too)
    resets_at: datetime.datetime
    possibly_billed: Decimal = ZERO  # the part of `held` kept for possibly billed jobs

    @property
    def held_running(self) -> Decimal:
        return self.held - self.possibly_billed

    @property
    def left(self) -> Decimal | None:
        return None if self.budget is None else self.budget - self.spent - self.held

    @property
    def percent(self) -> int | None:
        if not self.budget:
            return None
        return int((self.spent + self.held) * 100 / self.budget)


def usage(team: Team, at=None) -> Usage:
    """Real spend against the budget of the month containing `at` (default: now).

    Spent is what was charged in that month. Held is counted by each hold's state, not by
    month arithmetic: a hold is open until its job's release is written, whenever that
    happens, so a hold placed on the 31st and released after midnight is neither lost
    nor negative. One query: the month's charges and the open holds (an anti-join on the
    job's release, through the job index), summed apart."""
    start = month_start(at)
    released = LedgerEntry.objects.filter(job=OuterRef("job"), kind=Kind.RELEASE)
    charged = Q(kind__in=[Kind.CHARGE, Kind.CORRECTION])
    sums = (
        LedgerEntry.objects.filter(team=team, sandbox=False)
        .filter(
            (charged & Q(created_at__gte=start, created_at__lt=next_month(start)))
            | (Q(kind=Kind.HOLD) & ~Exists(released))
        )
        .aggregate(
            spent=Sum("amount", filter=charged, default=ZERO),
            held=Sum("amount", filter=Q(kind=Kind.HOLD), default=ZERO),
            possibly_billed=Sum(
                "amount",
                filter=Q(kind=Kind.HOLD, job__billing_status=POSSIBLY_BILLED),
                default=ZERO,
            ),
        )
    )
    return Usage(
        team,
        team.monthly_budget,
        sums["spent"],
        sums["held"],
        next_month(start),
        sums["possibly_billed"],
    )


class OverBudget(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def refusal(use: Usage, wanted: Decimal) -> str:
    held = f"held for running jobs ${use.held:.2f}"
    if use.possibly_billed:
        held = (
            f"held for running jobs ${use.held_running:.2f}, held for jobs a provider may "
            f"have billed ${use.possibly_billed:.2f}"
        )
    return (
        f"This would go over {use.team.name}'s monthly budget of ${use.budget:.2f}: "
        f"spent ${use.spent:.2f}, {held}, this submission "
        f"${wanted:.2f}, left ${max(use.left, ZERO):.2f}. The budget resets on "
        f"{use.resets_at:%Y-%m-%d} (UTC). Ask a manager to raise it, or submit less."
    )


def check(team: Team, wanted: Decimal) -> None:
    """Refuse what would exceed the budget (no lock: the early, friendly check)."""
    use = usage(team)
    if use.budget is not None and wanted > 0 and use.spent + use.held + wanted > use.budget:
        raise OverBudget(refusal(use, wanted))


def hold(team: Team, jobs) -> None:
    """Check the budget and hold every job's quote, in the caller's transaction.

    The team row is locked first (PostgreSQL), so concurrent submissions queue here and
    each sees the others' holds; SQLite's IMMEDIATE transactions serialize writers."""
    if connection.vendor == "postgresql":
        team = Team.objects.select_for_update().get(pk=team.pk)
    wanted = sum((j.quoted_amount for j in jobs if not j.sandbox), ZERO)
    check(team, wanted)
    for job in jobs:
        LedgerEntry.objects.create(
            team=team,
            job=job,
            user=job.created_by,
            kind=Kind.HOLD,
            provider=job.provider,
            amount=job.quoted_amount,
            sandbox=job.sandbox,
            price_book_id=job.price_book_id,
            explanation=job.quote_explanation[:300],
            idempotency_key=f"hold:{job.pk}",
            created_at=timezone.now(),
        )
    warn(team)


def _write(**fields) -> bool:
    try:
        with transaction.atomic():
            # Stamped from timezone.now() at the time of writing (not the field default,
            # bound once at import), so every row and every month boundary reads one clock.
            LedgerEntry.objects.create(created_at=timezone.now(), **fields)
        return True
    except IntegrityError:
        return False  # written before: a retried task or a duplicate webhook


def charge(job, amount: Decimal, explanation: str, price_book=None) -> bool:
    """The job's one charge (a second one is refused by its key); False if written before."""
    return _write(
        team_id=job.team_id,
        job=job,
        user=job.created_by,
        kind=Kind.CHARGE,
        provider=job.provider,
        amount=amount,
        sandbox=job.sandbox,
        price_book=price_book,
        explanation=explanation[:300],
        idempotency_key=f"charge:{job.pk}",
    )


def release(job, explanation: str) -> bool:
    """Close the job's hold; False if it has none or it was closed before."""
    held = LedgerEntry.objects.filter(job=job, kind=Kind.HOLD).first()
    if held is None:
        return False
    return _write(
        team_id=job.team_id,
        job=job,
        user=job.created_by,
        kind=Kind.RELEASE,
        provider=job.provider,
        amount=held.amount,
        sandbox=job.sandbox,
        price_book=held.price_book,
        explanation=explanation[:300],
        idempotency_key=f"release:{job.pk}",
    )


def settle(job, frm: str | None = None, provider_stopped: bool = False) -> bool:
    """After a job ended: charge it from its actual output if it succeeded, and release
    its hold, unless the provider may have done (and billed) the work: then the hold
    stays open and the job is possibly billed until an admin resolves it. `frm` is the
    state it ended from (read from its timeline when not given). Safe to call any number
    of times; True when it released the hold now."""
    if job.state == "succeeded" and job.output_width:
        quote, book = books.quote(
            job.provider, job.provider_obj.name, job.output_width, job.output_height, job.options
        )
        charge(job, quote.amount, quote.explanation, book)
    elif job.billing_status == POSSIBLY_BILLED:
        return False  # open until an admin resolves it
    elif not job.billing_status and job.state != "succeeded":
        frm = frm or exposure.state_before_end(job)
        if exposure.possibly_billed(job, frm, provider_stopped):
            exposure.keep_open(job)
            return False
    released = release(job, f"Hold released: job {job.state}.")
    if job.state == "succeeded":
        warn(job.team)
    return released


def reconcile() -> int:
    """Settle jobs that ended without it (a crash between the two); possibly billed
    holds stay open for an admin. Returns how many holds it released."""
    from jobs.models import Job

    stale = (
        LedgerEntry.objects.filter(kind=Kind.HOLD, job__state__in=Job.FINAL_STATES)
        .exclude(job__ledger__kind=Kind.RELEASE)
        .exclude(job__billing_status=POSSIBLY_BILLED)
    )
    return sum(settle(entry.job) for entry in stale.select_related("job"))


def warn(team: Team) -> None:
    """E-mail the team's managers once per month and threshold crossed."""
    use = usage(team)
    if use.percent is None:
        return
    for threshold in WARN_AT:
        if use.percent < threshold:
            continue
        try:
            with transaction.atomic():
                BudgetWarning.objects.create(
                    team=team, period=month_start().date(), threshold=threshold
                )
        except IntegrityError:
            continue  # sent already this month
        emails = [
            m.user.email
            for m in team.memberships.select_related("user")
            if m.role == "manager" and m.user.email
        ]
        if emails:
            subject = f"{team.name} has used {use.percent}% of its monthly budget"
            body = (
                f"Spent ${use.spent:.2f} and held ${use.held:.2f} of ${use.budget:.2f} "
                f"this month. The budget resets on {use.resets_at:%Y-%m-%d} (UTC)."
            )
            transaction.on_commit(
                lambda s=subject, b=body, e=emails: send_mail(
                    s, b, settings.DEFAULT_FROM_EMAIL, e, fail_silently=True
                )
            )
