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
from django.db.models import Q, Sum
from django.utils import timezone

from billing import books
from billing.models import BudgetWarning, LedgerEntry, Team

Kind = LedgerEntry.Kind
ZERO = Decimal("0.0000")
WARN_AT = (80, 100)  # percent of the monthly budget


def month_start(at=None) -> datetime.datetime:
    at = (at or timezone.now()).astimezone(datetime.UTC)
    return at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(start: datetime.datetime) -> datetime.datetime:
    return (start + datetime.timedelta(days=32)).replace(day=1)


@dataclass(frozen=True)
class Usage:
    team: Team
    budget: Decimal | None
    spent: Decimal
    held: Decimal
    resets_at: datetime.datetime

    @property
    def left(self) -> Decimal | None:
        return None if self.budget is None else self.budget - self.spent - self.held

    @property
    def percent(self) -> int | None:
        if not self.budget:
            return None
        return int((self.spent + self.held) * 100 / self.budget)


def usage(team: Team, at=None) -> Usage:
    start = month_start(at)
    sums = LedgerEntry.objects.filter(
        team=team, sandbox=False, created_at__gte=start, created_at__lt=next_month(start)
    ).aggregate(
        charged=Sum("amount", filter=Q(kind__in=[Kind.CHARGE, Kind.CORRECTION])),
        held=Sum("amount", filter=Q(kind=Kind.HOLD)),
        released=Sum("amount", filter=Q(kind=Kind.RELEASE)),
    )
    spent = sums["charged"] or ZERO
    held = (sums["held"] or ZERO) - (sums["released"] or ZERO)
    return Usage(team, team.monthly_budget, spent, held, next_month(start))


class OverBudget(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def refusal(use: Usage, wanted: Decimal) -> str:
    return (
        f"This would go over {use.team.name}'s monthly budget of ${use.budget:.2f}: "
        f"spent ${use.spent:.2f}, held for running jobs ${use.held:.2f}, this submission "
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
        )
    warn(team)


def _write(**fields) -> bool:
    try:
        with transaction.atomic():
            LedgerEntry.objects.create(**fields)
        return True
    except IntegrityError:
        return False  # written before: a retried task or a duplicate webhook


def settle(job) -> None:
    """After a job ended: charge it from its actual output if it succeeded, and release
    its hold either way. Safe to call any number of times."""
    held = LedgerEntry.objects.filter(job=job, kind=Kind.HOLD).first()
    if job.state == "succeeded" and job.output_width:
        quote, book = books.quote(
            job.provider, job.provider_obj.name, job.output_width, job.output_height, job.options
        )
        _write(
            team_id=job.team_id,
            job=job,
            user=job.created_by,
            kind=Kind.CHARGE,
            provider=job.provider,
            amount=quote.amount,
            sandbox=job.sandbox,
            price_book=book,
            explanation=quote.explanation[:300],
            idempotency_key=f"charge:{job.pk}",
        )
    if held:
        _write(
            team_id=job.team_id,
            job=job,
            user=job.created_by,
            kind=Kind.RELEASE,
            provider=job.provider,
            amount=held.amount,
            sandbox=job.sandbox,
            price_book=held.price_book,
            explanation=f"Hold released: job {job.state}.",
            idempotency_key=f"release:{job.pk}",
        )
    if job.state == "succeeded":
        warn(job.team)


def reconcile() -> int:
    """Release holds whose job has ended without settling (a crash between the two)."""
    from jobs.models import Job

    stale = LedgerEntry.objects.filter(kind=Kind.HOLD, job__state__in=Job.FINAL_STATES).exclude(
        job__ledger__kind=Kind.RELEASE
    )
    count = 0
    for entry in stale.select_related("job"):
        settle(entry.job)
        count += 1
    return count


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
