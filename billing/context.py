"""The budget banner on every page: teams of the signed-in user that have used 80% or
more of their monthly budget."""

import functools
from dataclasses import dataclass

from billing import ledger
from billing.models import Team
from billing.money import usd

WARN_PERCENT = ledger.WARN_AT[0]
FULL_PERCENT = ledger.WARN_AT[-1]


@dataclass(frozen=True)
class Banner:
    level: str  # "warn" or "error", the alert's class
    message: str
    team: Team


def banner(use: ledger.Usage) -> Banner | None:
    percent = use.percent
    if percent is None or percent < WARN_PERCENT:
        return None
    message = (
        f"{use.team.name} has used {percent}% of its {usd(use.budget)} monthly budget "
        f"(spent {usd(use.spent)}, held {usd(use.held)}). "
        f"It resets on {use.resets_at:%Y-%m-%d} UTC."
    )
    if percent >= FULL_PERCENT:
        message += " New submissions that cost money are refused until then."
    return Banner("error" if percent >= FULL_PERCENT else "warn", message, use.team)


def banners_for(user) -> list[Banner]:
    """One query for the teams with a budget, then one usage sum per such team."""
    teams = Team.objects.filter(memberships__user=user, monthly_budget__gt=0)
    found = (banner(ledger.usage(team)) for team in teams)
    return [b for b in found if b]


def budget(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    # Lazy and computed once: only base.html asks, so htmx fragments cost no query.
    return {"budget_banners": functools.cache(lambda: banners_for(user))}
