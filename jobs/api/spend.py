"""Spend for managers and staff: the spend page's totals and its CSV export, under the
page's filters (billing.spend), through the page's own functions."""

import datetime
from decimal import Decimal

from django.http import Http404
from ninja import Field, Query, Router, Schema

from billing import spend as report
from billing.views import REFUSED, csv_download
from jobs.api.problems import Problem, ProblemOut

router = Router(tags=["Spend"])


class SpendFilters(Schema):
    since: str = Field("", description="From this day (YYYY-MM-DD); default: this month.")
    until: str = Field("", description="To this day, included (YYYY-MM-DD).")
    team: str = Field("", description="One team's id (of those you manage).")
    provider: str = Field("", description="A provider's slug.")
    include_sandbox: bool = Field(False, description="Count sandbox jobs (not billed) too.")


class Split(Schema):
    real: Decimal  # charged by real providers
    would_be: Decimal  # sandbox jobs: what real providers would have charged
    real_count: int
    would_be_count: int


class Row(Split):
    key: str  # the provider's slug, or the team's id
    label: str


class BudgetOut(Schema):
    team: int
    name: str
    budget: Decimal
    spent: Decimal
    held: Decimal
    left: Decimal
    over_by: Decimal


class SavedMonth(Schema):
    team: int
    name: str
    month: str  # YYYY-MM (UTC, like budgets)
    amount: Decimal  # what the reused jobs would have cost
    count: int


class SpendOut(Schema):
    since: datetime.date
    until: datetime.date
    team: int | None = None
    provider: str = ""
    include_sandbox: bool
    totals: Split
    possibly_billed: Split  # holds of jobs a provider may have billed (an admin checks)
    by_provider: list[Row]
    by_team: list[Row]
    budgets: list[BudgetOut]  # this month, per team with a budget
    saved_by_reuse: list[SavedMonth]  # results reused for free, per team and month
    export: str  # the CSV of these filters


def _filters(request) -> report.Filters:
    """The page's filter form on the query; 403 for a member, 404 for a team the user
    may not review, 422 naming a value that cannot be used."""
    if not report.can_review(request.user):
        raise Problem(403, REFUSED)
    form = report.SpendFilter(request.GET, teams=report.visible_teams(request.user))
    if form.unknown_team:
        raise Http404("No such team, or not one you manage.")
    if not form.is_valid():
        errors = [f"{name}: {err[0]}" for name, err in form.errors.items()]
        raise Problem(422, "The filter has values we cannot use.", errors=errors)
    return form.filters()


def _rows(rows: list[dict], key: str) -> list[dict]:
    fields = ("real", "would_be", "real_count", "would_be_count", "label")
    return [{"key": str(r[key]), **{k: r[k] for k in fields}} for r in rows]


@router.get(
    "/spend",
    response={200: SpendOut, 401: ProblemOut, 403: ProblemOut, 404: ProblemOut, 422: ProblemOut},
)
def spend(request, filters: Query[SpendFilters]):
    """Real and sandbox spend of the teams you manage (all teams for staff), by provider
    and team, with this month's budgets: the spend page's figures."""
    f = _filters(request)
    user = request.user
    everything = report.grid(report.all_spend(user, f))
    shown = report.shown_grid(everything, f)
    people = report.people_grid(report.spend_cells(user, f))
    exposed = report.possibly_billed(user, f)
    return {
        "since": f.since,
        "until": f.until,
        "team": f.team.pk if f.team else None,
        "provider": f.provider,
        "include_sandbox": f.include_sandbox,
        "totals": report.totals(everything).__dict__,
        "possibly_billed": report.totals(report.all_possibly_billed(user, f)).__dict__,
        "by_provider": _rows(report.by_provider(shown), "provider"),
        "by_team": _rows(report.by_team(people, exposed), "team"),
        "budgets": [
            {
                "team": line.use.team.pk,
                "name": line.use.team.name,
                "budget": line.use.budget,
                "spent": line.use.spent,
                "held": line.use.held,
                "left": line.left,
                "over_by": line.over_by,
            }
            for line in report.budgets(user)
        ],
        "saved_by_reuse": [
            {
                "team": m["team"],
                "name": m["label"],
                "month": m["month"].strftime("%Y-%m"),
                "amount": m["amount"],
                "count": m["count"],
            }
            for m in report.saved_by_reuse(user, f).months
        ],
        "export": f"/api/v1/spend/export.csv?{f.query()}",
    }


@router.get(
    "/spend/export.csv",
    response={200: None, 401: ProblemOut, 403: ProblemOut, 404: ProblemOut, 422: ProblemOut},
    openapi_extra={
        "responses": {
            200: {
                "description": "The spend page's CSV: one row per charge or possibly billed "
                "hold, oldest first.",
                "content": {"text/csv": {"schema": {"type": "string"}}},
            }
        }
    },
)
def export(request, filters: Query[SpendFilters]):
    """The spend page's CSV export under these filters, streamed."""
    return csv_download(request.user, _filters(request))
