import csv

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from billing import spend as report
from jobs import approvals

PAGE_SIZE = 50
# What the possibly billed list shows of each hold (its job's row is wide).
EXPOSED_FIELDS = (
    *("created_at", "provider", "sandbox", "amount", "job_id", "team_id", "user_id"),
    *("team__name", "user__username", "job__state", "job__error_code"),
)
REFUSED = "Only team managers and staff can review spend."


def _filters(request):
    """The filter form and what it asks for; 404 for a team the user may not see."""
    form = report.SpendFilter(request.GET, teams=report.visible_teams(request.user))
    if form.unknown_team:
        raise Http404("No such team")
    return form, form.filters()


def _refused(request):
    return render(request, "billing/spend.html", {"refused": REFUSED}, status=403)


@login_required
@require_GET
def spend(request):
    if not report.can_review(request.user):
        return _refused(request)
    form, f = _filters(request)
    # The figures come from the daily rollups and the open holds, never a scan of the
    # ledger; only the listed page reads ledger rows (newest first, through an index).
    everything = report.grid(report.all_spend(request.user, f))  # real and sandbox
    shown = report.shown_grid(everything, f)
    people = report.people_grid(report.spend_cells(request.user, f))
    exposed = report.possibly_billed(request.user, f)
    by_day = report.by_day(shown)
    listed = report.Listing(
        report.charges(request.user, f).select_related("team", "user", "price_book"), by_day
    )
    page = Paginator(listed, PAGE_SIZE).get_page(request.GET.get("page"))
    partial = bool(request.htmx and request.htmx.target == "report")
    ctx = {
        "form": form,
        "f": f,
        "query": f.query(),
        "with_sandbox_query": report.with_sandbox(f).query(),
        "budgets": [] if partial else report.budgets(request.user),
        # Submissions above a team's approval limit, waiting for a manager.
        "approvals": [] if partial else approvals.waiting_for(request.user),
        "reasons": approvals.REASONS,
        "stored": [] if partial else report.stored(request.user),
        "retention_days": settings.RETENTION_DAYS,
        "totals": report.totals(everything),
        "possibly_billed": report.totals(report.all_possibly_billed(request.user, f)),
        "saved": report.saved_by_reuse(request.user, f),  # reused results (jobs/reuse.py)
        # The jobs an admin still has to check, newest first (a short list, not paged).
        "exposed": report.possibly_billed_entries(request.user, f)
        .select_related("team", "user", "job")
        .only(*EXPOSED_FIELDS)
        .order_by("-created_at", "-pk")[:PAGE_SIZE],
        "by_provider": report.by_provider(shown),
        "by_person": report.by_person(people),
        "by_team": report.by_team(people, exposed),
        "by_day": by_day,
        "data": report.chart_data(shown, f),
        "page": page,
    }
    return render(request, "billing/spend.html#report" if partial else "billing/spend.html", ctx)


class _Echo:
    """A file-like object whose write() hands the line back (Django's streaming CSV)."""

    def write(self, value):
        return value


@login_required
@require_GET
def spend_csv(request):
    if not report.can_review(request.user):
        return _refused(request)
    _, f = _filters(request)
    return csv_download(request.user, f)


def csv_download(user, f: report.Filters) -> StreamingHttpResponse:
    """The spend CSV of what `user` may review under filters `f`, streamed (the page's
    export and the API's /api/v1/spend/export.csv)."""
    writer = csv.writer(_Echo())
    rows = report.export_rows(report.exported(user, f), reused=report.reused_jobs(user, f))
    response = StreamingHttpResponse(
        (writer.writerow(row) for row in rows), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{report.export_filename(f)}"'
    return response


# --- approval above a team's limit (jobs/approvals.py) -------------------------------------------
@login_required
@require_POST
def approval_decide(request, batch, decision):
    """Approve or reject a waiting submission (managers of its team, staff); htmx gets the
    section back, a plain form post the page."""
    try:
        if decision == "approve":
            done = approvals.approve(request.user, batch)
        else:
            done = approvals.reject(request.user, batch, request.POST.get("reason"))
    except approvals.NotAllowed as refusal:
        return _approvals_answer(request, "error", refusal.message, status=403)
    except approvals.BadReason as refusal:
        return _approvals_answer(request, "error", refusal.message, status=422)
    if not done.count:
        said = "Nothing was waiting: this submission was decided already."
    else:
        jobs = f"{done.count} job{'' if done.count == 1 else 's'}"
        said = (
            f"Approved: {jobs} queued for the providers."
            if decision == "approve"
            else f"Rejected: {jobs} canceled, their holds released."
        )
    return _approvals_answer(request, "ok", said)


def _approvals_answer(request, level: str, text: str, status: int = 200):
    if request.htmx or status != 200:
        ctx = {
            "approvals": approvals.waiting_for(request.user),
            "reasons": approvals.REASONS,
            "approval_notice": (level, text),
        }
        return render(request, "billing/_approvals.html", ctx, status=status)
    messages.success(request, text)
    return redirect(reverse("billing:spend") + "#approvals")
