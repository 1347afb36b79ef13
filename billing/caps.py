"""A member's own monthly cap in a team (Membership.monthly_cap), beside the team budget.

A person's month is counted like the team's: real spend only (never sandbox), the charges
(and corrections) written to them this calendar month (UTC), plus every open hold of a
job they created. ledger.hold() checks it in the same locked transaction as the budget,
so the cap has the budget's no-overrun guarantee under concurrent submissions.
"""

import datetime
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Sum

from billing.models import DailySpend, Membership, OpenHold, Team
from billing.money import usd

ZERO = Decimal("0.0000")


@dataclass(frozen=True)
class MemberUsage:
    cap: Decimal | None
    spent: Decimal  # charges and corrections written to them this month
    held: Decimal  # open holds of jobs they created, whenever placed

    @property
    def used(self) -> Decimal:
        return self.spent + self.held

    @property
    def left(self) -> Decimal | None:
        return None if self.cap is None else self.cap - self.used


def _month(at=None) -> tuple[datetime.date, datetime.date]:
    from billing.ledger import month_start, next_month

    start = month_start(at)
    return start.date(), next_month(start).date()


def _exact(value) -> Decimal:
    # SQLite sums decimals as floats: back to the ledger's four places.
    return ZERO if value is None else Decimal(str(value)).quantize(ZERO)


def spent_and_held(team: Team, at=None) -> dict[int, tuple[Decimal, Decimal]]:
    """Everyone's month in the team, by user id: two grouped sums over the rollups."""
    since, until = _month(at)
    spent = (
        DailySpend.objects.filter(team=team, sandbox=False, day__gte=since, day__lt=until)
        .values_list("user_key")
        .annotate(total=Sum("amount"))
        .order_by()
    )
    held = (
        OpenHold.objects.filter(team=team, sandbox=False, job__created_by__isnull=False)
        .values_list("job__created_by")
        .annotate(total=Sum("amount"))
        .order_by()
    )
    found: dict[int, tuple[Decimal, Decimal]] = {}
    for user_id, total in spent:
        found[user_id] = (_exact(total), ZERO)
    for user_id, total in held:
        found[user_id] = (found.get(user_id, (ZERO, ZERO))[0], _exact(total))
    return found


def usage(team: Team, user_id: int, cap: Decimal | None, at=None) -> MemberUsage:
    since, until = _month(at)
    spent = DailySpend.objects.filter(
        team=team, user_key=user_id, sandbox=False, day__gte=since, day__lt=until
    ).aggregate(total=Sum("amount"))["total"]
    held = OpenHold.objects.filter(team=team, sandbox=False, job__created_by=user_id).aggregate(
        total=Sum("amount")
    )["total"]
    return MemberUsage(cap, _exact(spent), _exact(held))


def refusal(team: Team, use: MemberUsage, wanted: Decimal) -> str:
    from billing.ledger import month_start, next_month

    left = max(use.left, ZERO)
    return (
        f"Your monthly cap in {team.name} is {usd(use.cap)}; you have {usd(left)} left; "
        f"this submission would cost {usd(wanted)}. Your cap resets on "
        f"{next_month(month_start()):%Y-%m-%d} (UTC). Ask a manager of {team.name} to "
        "raise it, or submit less."
    )


def check(team: Team, wanted_by_user: dict[int, Decimal]) -> str | None:
    """The refusal for the first person whose cap `wanted` would exceed, or None.
    Exactly reaching the cap is allowed. Call it where the budget is checked, under the
    same lock (ledger.hold)."""
    wanted_by_user = {uid: w for uid, w in wanted_by_user.items() if uid and w > 0}
    if not wanted_by_user:
        return None
    caps = Membership.objects.filter(
        team=team, user_id__in=wanted_by_user, monthly_cap__isnull=False
    ).values_list("user_id", "monthly_cap")
    for user_id, cap in caps:
        use = usage(team, user_id, cap)
        if use.used + wanted_by_user[user_id] > cap:
            return refusal(team, use, wanted_by_user[user_id])
    return None
