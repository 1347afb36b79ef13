"""Holds, charges, releases and corrections: the only code that writes ledger rows.

Every row has an idempotency key (`hold:<job>`, `charge:<job>`, `release:<job>`, a
correction's own), so a retried task or a duplicate webhook writes nothing twice: the
unique constraint refuses the second row. Real spend and sandbox spend are kept apart
(`sandbox`); budgets count real spend only. Each row's rollups (billing/rollups.py) are
written with it, in its transaction, by LedgerEntry.save(); budgets read them.
"""

import datetime
import uuid
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from billing import books, exposure
from billing.models import BudgetWarning, DailySpend, LedgerEntry, OpenHold, Team
from billing.money import usd

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
    nor negative. Both come from the rollups (billing/rollups.py), kept in the same
    transaction as each ledger row: the month's daily cells and the open holds, summed
    in one statement, never a scan of the ledger."""
    start = month_start(at)
    spent, held, possibly_billed = _usage_sums(team, start.date(), next_month(start).date())
    return Usage(team, team.monthly_budget, spent, held, next_month(start), possibly_billed)


def _usage_sums(team: Team, since: datetime.date, until: datetime.date) -> list[Decimal]:
    """The month's real spend (daily cells, `until` exclusive), the open real holds and the
    part of them kept for possibly billed jobs: three indexed sums in one statement (plain
    SQL: it runs for every budget line and banner, and the ORM's subqueries cost more to
    build than to run)."""
    from jobs.models import Job

    q = connection.ops.quote_name
    cells, holds = q(DailySpend._meta.db_table), q(OpenHold._meta.db_table)
    day = connection.ops.adapt_datefield_value
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT
                (SELECT SUM(amount) FROM {cells}
                 WHERE team_id = %s AND NOT sandbox AND day >= %s AND day < %s),
                (SELECT SUM(amount) FROM {holds} WHERE team_id = %s AND NOT sandbox),
                (SELECT SUM(h.amount) FROM {holds} h JOIN {q(Job._meta.db_table)} j
                 ON j.id = h.job_id
                 WHERE h.team_id = %s AND NOT h.sandbox AND j.billing_status = %s)""",
            [team.pk, day(since), day(until), team.pk, team.pk, POSSIBLY_BILLED],
        )
        row = cursor.fetchone()
    # Exact to the cent's hundredth: numeric on PostgreSQL; SQLite sums decimals as floats.
    return [ZERO if v is None else Decimal(str(v)).quantize(ZERO) for v in row]


class OverBudget(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def refusal(use: Usage, wanted: Decimal) -> str:
    held = f"held for running jobs {usd(use.held)}"
    if use.possibly_billed:
        held = (
            f"held for running jobs {usd(use.held_running)}, held for jobs a provider may "
            f"have billed {usd(use.possibly_billed)}"
        )
    return (
        f"This would go over {use.team.name}'s monthly budget of {usd(use.budget)}: "
        f"spent {usd(use.spent)}, {held}, this submission "
        f"{usd(wanted)}, left {usd(max(use.left, ZERO))}. The budget resets on "
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
    each sees the others' holds; SQLite's IMMEDIATE transactions serialize writers.
    Members' own monthly caps are checked here too, under that same lock: the team lock
    serializes every submission of the team, so two of one person's cannot both pass."""
    from billing import caps

    if connection.vendor == "postgresql":
        team = Team.objects.select_for_update().get(pk=team.pk)
    wanted = sum((j.quoted_amount for j in jobs if not j.sandbox), ZERO)
    check(team, wanted)
    by_user: dict[int, Decimal] = {}
    for job in jobs:
        if not job.sandbox:
            by_user[job.created_by_id] = by_user.get(job.created_by_id, ZERO) + job.quoted_amount
    over_cap = caps.check(team, by_user)
    if over_cap:
        raise OverBudget(over_cap)
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


def _write(created_at=None, **fields) -> bool:
    """Insert one row (and its rollups: LedgerEntry.save()) in a savepoint of its own;
    False if its idempotency key was written before, with nothing written now."""
    try:
        with transaction.atomic():
            # Stamped from timezone.now() at the time of writing (not the field default,
            # bound once at import), so every row and every month boundary reads one clock.
            LedgerEntry.objects.create(created_at=created_at or timezone.now(), **fields)
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


def correct(
    team: Team,
    amount: Decimal,
    explanation: str,
    at=None,
    job=None,
    user=None,
    provider: str | None = None,
    sandbox: bool | None = None,
    key: str | None = None,
) -> bool:
    """A correction: money added to (or, negative, taken from) a team's spend, dated `at`
    (default now; a past date backdates it into that day's and month's spend). Provider,
    person and sandbox default to the job's. `key` makes a retried correction a no-op
    (default: a new one each call); False if that key was written before."""
    if provider is None:
        provider = job.provider if job is not None else ""
    if sandbox is None:
        sandbox = job.sandbox if job is not None else False
    if user is None and job is not None:
        user = job.created_by
    return _write(
        created_at=at,
        team_id=team.pk,
        job=job,
        user=user,
        kind=Kind.CORRECTION,
        provider=provider,
        amount=Decimal(amount),
        sandbox=sandbox,
        explanation=explanation[:300],
        idempotency_key=key or f"correction:{uuid.uuid4().hex}",
    )


def settle(job, frm: str | None = None, provider_stopped: bool = False) -> bool:
    """After a job ended: charge it from its actual output if it succeeded, and release
    its hold, unless the provider may have done (and billed) the work: then the hold
    stays open and the job is possibly billed until an admin resolves it. `frm` is the
    state it ended from (read from its timeline when not given). Safe to call any number
    of times; True when it released the hold now."""
    if job.reused_from_id:
        return False  # another job's result, reused (jobs/reuse.py): no hold, no charge
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

    stale = OpenHold.objects.filter(job__state__in=Job.FINAL_STATES).exclude(
        job__billing_status=POSSIBLY_BILLED
    )  # open holds (the rollup), not an anti-join over the ledger
    return sum(settle(held.job) for held in stale.select_related("job"))


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
                f"Spent {usd(use.spent)} and held {usd(use.held)} of {usd(use.budget)} "
                f"this month. The budget resets on {use.resets_at:%Y-%m-%d} (UTC)."
            )
            transaction.on_commit(
                lambda s=subject, b=body, e=emails: send_mail(
                    s, b, settings.DEFAULT_FROM_EMAIL, e, fail_silently=True
                )
            )
