import csv

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from billing import spend as report

PAGE_SIZE = 50
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
    everything = report.all_charges(request.user, f)
    shown = report.charges(request.user, f)
    exposed = report.possibly_billed(request.user, f)
    page = Paginator(shown.select_related("team", "user", "price_book"), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    partial = bool(request.htmx and request.htmx.target == "report")
    ctx = {
        "form": form,
        "f": f,
        "query": f.query(),
        "with_sandbox_query": report.with_sandbox(f).query(),
        "budgets": [] if partial else report.budgets(request.user),
        "stored": [] if partial else report.stored(request.user),
        "retention_days": settings.RETENTION_DAYS,
        "totals": report.totals(everything),
        "possibly_billed": report.totals(report.all_possibly_billed(request.user, f)),
        # The jobs an admin still has to check, newest first (a short list, not paged).
        "exposed": exposed.select_related("team", "user", "job").order_by("-created_at", "-pk")[
            :PAGE_SIZE
        ],
        "by_provider": report.by_provider(shown),
        "by_person": report.by_person(shown),
        "by_team": report.by_team(shown, exposed),
        "by_day": report.by_day(shown),
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
    writer = csv.writer(_Echo())
    rows = report.export_rows(report.exported(request.user, f))
    response = StreamingHttpResponse(
        (writer.writerow(row) for row in rows), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{report.export_filename(f)}"'
    return response
