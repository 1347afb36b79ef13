import uuid

from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.http import FileResponse, Http404, HttpResponseGone
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from billing.models import LedgerEntry
from billing.teams import teams_of
from jobs import files, intake, pipeline, quotes, stats
from jobs import history as history_pages
from jobs.forms import (
    HistoryFilter,
    all_options_from,
    provider_choices_from,
    provider_panels,
)
from jobs.imaging import CONTENT_TYPES
from jobs.models import Job


def _job(request, pk, *related) -> Job:
    """A job of one of the user's teams, or 404: other teams' jobs do not exist.
    `related`: what the page shows of it, fetched in the same query."""
    return get_object_or_404(Job.objects.for_user(request.user).select_related(*related), pk=pk)


def _gone(job: Job) -> HttpResponseGone:
    """A file of a job whose files expired: 410 in plain words, never a broken file."""
    return HttpResponseGone(job.files_expired_note, content_type="text/plain; charset=utf-8")


def _team(request, team_id):
    teams = teams_of(request.user)
    if team_id:
        return teams.filter(pk=team_id).first() if str(team_id).isdigit() else None
    return teams.first()


@login_required
@require_http_methods(["GET", "POST"])
def upload(request):
    teams = list(teams_of(request.user))  # once: the team picker and the budget
    ctx = {"teams": teams, "errors": [], "created": []}
    if request.method == "POST":
        choices = provider_choices_from(request.POST)
        team = _team(request, request.POST.get("team"))
        try:
            if team is None:
                raise intake.SubmissionRefused(["Pick one of your teams."])
            ctx["created"] = intake.submit_uploads(
                user=request.user,
                team=team,
                files=request.FILES.getlist("images"),
                choices=choices,
            )
        except intake.SubmissionRefused as refusal:
            ctx["errors"] = refusal.errors
        ctx["compare"] = len({job.provider for job in ctx["created"]}) > 1
        if request.htmx:
            status = 422 if ctx["errors"] else 201
            return render(request, "jobs/upload.html#outcome", ctx, status=status)
        if ctx["created"]:
            return redirect(f"/jobs/?batch={ctx['created'][0].batch}")
        ctx["panels"] = provider_panels(
            [slug for slug, _ in choices], {slug: raw for slug, raw in choices}
        )
        ctx["preview"] = quotes.preview([], [], team=team)
        return render(request, "jobs/upload.html", ctx, status=422)
    ctx["panels"] = provider_panels(["local"])
    ctx["preview"] = quotes.preview([], [], team=teams[0] if teams else None)
    return render(request, "jobs/upload.html", ctx)


@login_required
@require_GET
def preview(request):
    """The upload page's live preview: result size and price per image and provider,
    every provider's total, and the team's budget."""
    result = quotes.preview(
        provider_choices_from(request.GET),
        intake.parse_sizes(request.GET.getlist("size")),
        raw_options=all_options_from(request.GET),
        team=_team(request, request.GET.get("team")),
    )
    return render(request, "jobs/_preview.html", {"preview": result})


@login_required
@require_GET
def history(request):
    # The user's teams once: their ids scope the jobs (`team_id IN (...)`, which the
    # (team, -created_at, -id) index serves; a join through memberships would not),
    # their names make the Team filter.
    teams = list(teams_of(request.user))
    form = HistoryFilter(request.GET or None, teams=teams)
    jobs = (
        Job.objects.filter(team_id__in=[t.pk for t in teams])
        .select_related("created_by", "price_book")
        # The Cost column: the page's charges in one query, not one a row.
        .prefetch_related(Prefetch("ledger", LedgerEntry.objects.filter(kind="charge")))
    )
    jobs = form.filter(jobs)
    batch = request.GET.get("batch")
    count = None
    if batch:
        try:
            jobs = jobs.filter(batch=uuid.UUID(batch))
        except ValueError:
            jobs = jobs.none()
        count = jobs.count()  # one submission's jobs: a handful, through the batch index
    page = history_pages.page(
        jobs, older=request.GET.get("older", ""), newer=request.GET.get("newer", "")
    )
    if page.complete:
        count = len(page.jobs)
    query = request.GET.copy()
    for name in ("older", "newer", "page"):  # "page": links from before cursors
        query.pop(name, None)
    ctx = {
        "form": form,
        "page": page,
        "count": count,
        "newest_url": f"?{query.urlencode()}",
        "older_url": _with(query, older=page.older),
        "newer_url": _with(query, newer=page.newer),
        "batch": batch,
    }
    template = "jobs/history.html"
    if request.htmx and request.htmx.target == "results":
        template += "#results"
    return render(request, template, ctx)


def _with(query, **cursor) -> str:
    """The History URL with these filters and one cursor ("" when there is no cursor)."""
    ((name, value),) = cursor.items()
    if not value:
        return ""
    query = query.copy()
    query[name] = value
    return f"?{query.urlencode()}"


@login_required
@require_GET
def row(request, pk):
    job = _job(request, pk, "created_by", "price_book")
    return render(request, "jobs/_row.html", {"job": job})


@login_required
@require_GET
def detail(request, pk):
    job = _job(request, pk, "team", "created_by", "price_book", "billing_resolved_by")
    ctx = {
        "job": job,
        "events": job.events.all(),
        "cost": quotes.cost(job),
        # Lazy (the template calls them): only the full page shows them, not the live
        # fragment polled every 2 s.
        "panels": lambda: provider_panels([job.provider], {job.provider: job.options}),
        "siblings": lambda: (
            Job.objects.filter(batch=job.batch, input_file=job.input_file.name)
            .exclude(pk=job.pk)
            .exists()
        ),
    }
    template = "jobs/detail.html"
    if request.htmx and request.htmx.target == "live":
        template += "#live"
    return render(request, template, ctx)


@login_required
@require_GET
def image(request, pk, which, kind):
    job = _job(request, pk)
    if job.files_expired_at:
        return _gone(job)
    field = getattr(job, f"{which}_{'thumb' if kind == 'thumb' else 'file'}")
    if which == "output" and kind == "thumb" and not field and job.output_file:
        # Results get their thumbnail the first time someone looks, not on the way to
        # `succeeded` (see pipeline.store_result).
        field = job.output_thumb
        field.name = pipeline.output_thumb(job)
    if not field:
        raise Http404("No such image yet")
    if kind == "thumb":
        content_type = "image/webp"
    else:
        content_type = CONTENT_TYPES[getattr(job, f"{which}_format")]
    if files.in_bucket():
        return files.redirect(field.name, content_type=content_type)
    response = FileResponse(field.open("rb"), content_type=content_type)
    response["Cache-Control"] = "private, max-age=3600"
    return response


@login_required
@require_GET
def download(request, pk):
    job = _job(request, pk)
    if job.files_expired_at:
        return _gone(job)
    if job.state != Job.State.SUCCEEDED or not job.output_file:
        raise Http404("This job has no result to download")
    stem = job.input_name.rsplit(".", 1)[0]
    ext = job.output_file.name.rsplit(".", 1)[-1]
    filename = f"{stem}-{job.provider}-{job.output_width}x{job.output_height}.{ext}"
    if files.in_bucket():
        return files.redirect(
            job.output_file.name,
            content_type=CONTENT_TYPES[job.output_format],
            download_as=filename,
        )
    return FileResponse(
        job.output_file.open("rb"),
        as_attachment=True,
        filename=filename,
        content_type=CONTENT_TYPES[job.output_format],
    )


@login_required
@require_POST
def cancel(request, pk):
    job = _job(request, pk)
    pipeline.cancel(job, by=request.user)
    if request.htmx:
        return HttpResponseClientRedirect(job.get_absolute_url())
    return redirect(job)


@login_required
@require_POST
def rerun(request, pk):
    job = _job(request, pk)
    try:
        created = intake.rerun(job, user=request.user, choices=provider_choices_from(request.POST))
    except intake.SubmissionRefused as refusal:
        ctx = {
            "job": job,
            "events": job.events.all(),
            "rerun_errors": refusal.errors,
            "cost": quotes.cost(job),
            "panels": provider_panels([job.provider], {job.provider: job.options}),
        }
        return render(request, "jobs/detail.html", ctx, status=422)
    if len(created) == 1:
        return redirect(created[0])
    return redirect(f"/jobs/?batch={created[0].batch}")


@login_required
@require_GET
def compare(request, batch):
    jobs = list(Job.objects.for_user(request.user).filter(batch=batch).order_by("pk"))
    if not jobs:
        raise Http404("No such batch")
    groups = {}
    for job in jobs:
        # Expired jobs lost their file names: their image as the page describes it.
        key = job.input_file.name or (job.input_name, job.input_width, job.input_height)
        groups.setdefault(key, []).append(job)
    ctx = {
        "groups": list(groups.values()),
        "batch": batch,
        "active": any(j.is_active for j in jobs),
    }
    template = "jobs/compare.html"
    if request.htmx and request.htmx.target == "compare":
        template += "#grid"
    return render(request, template, ctx)


@login_required
@require_GET
def providers(request):
    return render(
        request,
        "jobs/providers.html",
        {"rows": stats.provider_stats(Job.objects.for_user(request.user))},
    )
