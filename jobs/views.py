import uuid

from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.http import (
    FileResponse,
    Http404,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseGone,
    JsonResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import (
    require_GET,
    require_http_methods,
    require_POST,
    require_safe,
)
from django_htmx.http import HttpResponseClientRedirect

from billing.models import LedgerEntry
from billing.teams import teams_of
from jobs import choices, deletion, files, intake, pipeline, presets, quotes, stats, zips
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
    """A file of a job whose files expired or were deleted: 410 in plain words, never a
    broken file."""
    return HttpResponseGone(deletion.gone_note(job), content_type="text/plain; charset=utf-8")


def _team(request, team_id):
    teams = teams_of(request.user)
    if team_id:
        return teams.filter(pk=team_id).first() if str(team_id).isdigit() else None
    return teams.first()


@login_required
@require_http_methods(["GET", "POST"])
def upload(request):
    teams = list(teams_of(request.user))  # once: the team picker and the budget
    ctx = {"teams": teams, "errors": [], "created": [], "presets": presets.presets_of(request.user)}
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
                email_when_done=request.POST.get("email_when_done") == "on",
                fresh=request.POST.getlist("fresh"),  # "run again" lines (jobs/reuse.py)
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
        fresh=request.GET.getlist("fresh"),
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
    jobs = history_jobs(teams, form)
    batch = request.GET.get("batch")
    count = None
    if batch:
        try:
            jobs = jobs.filter(batch=uuid.UUID(batch))
        except ValueError:
            jobs = jobs.none()
        count = jobs.count()  # one submission's jobs: a handful, through the batch index
    page = history_pages.page(
        jobs,
        older=request.GET.get("older", ""),
        newer=request.GET.get("newer", ""),
        size=history_pages.PAGE_SIZE,
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
        "zip": zips.batch_summary(request.user, batch) if batch else None,
        # The newest page shows new jobs as they are made (a submission's page has all).
        "live_url": _live_url(query, page.jobs[0] if page.jobs else None)
        if page.first and not batch
        else None,
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
@require_safe  # HEAD too: download managers and link checkers ask first
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
@require_safe  # HEAD too: download managers and link checkers ask first
def download(request, pk):
    return result_download(_job(request, pk))


def result_download(job: Job):
    """A job's result as a download, for the page and the API (/api/v1/jobs/<id>/result):
    410 in plain words once its files are gone, 404 while it has none, else the file under
    the name a ZIP of results gives it."""
    if job.files_expired_at:
        return _gone(job)
    if job.state != Job.State.SUCCEEDED or not job.output_file:
        raise Http404("This job has no result to download")
    filename = zips.result_name(job)  # the same name as in a ZIP of results
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
    job = _job(request, pk, "team", "created_by", "price_book", "billing_resolved_by")
    choices = provider_choices_from(request.POST)
    try:
        created = intake.rerun(job, user=request.user, choices=choices)
    except intake.SubmissionRefused as refusal:
        ctx = {
            "job": job,
            "rerun_errors": refusal.errors,
            # The form exactly as sent: what was ticked (nothing, perhaps) and every
            # panel's options, not the job's own provider ticked again.
            "panels": provider_panels(
                [slug for slug, _ in choices], all_options_from(request.POST)
            ),
        }
        if request.htmx:  # only the form's section: the user stays where they are
            return render(request, "jobs/detail.html#rerun", ctx, status=422)
        ctx |= {
            "events": job.events.all(),
            "cost": quotes.cost(job),
            "siblings": Job.objects.filter(batch=job.batch, input_file=job.input_file.name)
            .exclude(pk=job.pk)
            .exists(),
        }
        return render(request, "jobs/detail.html", ctx, status=422)
    url = created[0].get_absolute_url() if len(created) == 1 else f"/jobs/?batch={created[0].batch}"
    if request.htmx:
        return HttpResponseClientRedirect(url)
    return redirect(url)


@login_required
@require_GET
def compare(request, batch):
    jobs = list(Job.objects.for_user(request.user).filter(batch=batch).order_by("pk"))
    if not jobs:
        raise Http404("No such batch")
    groups = {}
    for job in jobs:
        # By the image as the page describes it: expired and deleted jobs lost their file
        # names, and a deleted one stays with the siblings that keep the shared original.
        key = (job.input_name, job.input_width, job.input_height, job.input_bytes)
        groups.setdefault(key, []).append(job)
    ctx = {
        # A job that still has the original first: the group's "Original" tile shows it.
        "groups": [sorted(group, key=lambda j: not j.input_file) for group in groups.values()],
        "batch": batch,
        "active": any(j.is_active for j in jobs),
        "zip": zips.Summary.of(jobs),
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
        {
            "rows": stats.provider_stats(Job.objects.for_user(request.user)),
            "unreachable": stats.unreachable(),
        },
    )


@login_required
@require_POST
def keep(request, pk):
    """'Keep this one' (jobs/choices.py), then back to the page the button was on. With
    htmx the redirect is followed with the same headers: the compare grid or the job's
    live part answers, and the button's hx-select takes it."""
    job = _job(request, pk)
    wanted = {"1": True, "0": False}.get(request.POST.get("keep", ""))
    try:
        choices.keep(job, request.user, wanted)
    except choices.NotKeepable as refusal:
        return HttpResponse(str(refusal), status=409, content_type="text/plain; charset=utf-8")
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        back = job.get_absolute_url()
    return redirect(back)


# --- saved presets (jobs/presets.py) ----------------------------------------------------------
def _presets_part(request, status=200, **extra):
    ctx = {"presets": presets.presets_of(request.user), "teams": list(teams_of(request.user))}
    return render(request, "jobs/_presets.html", ctx | extra, status=status)


@login_required
@require_POST
def preset_save(request):
    """Save the upload form's chosen providers and options as a preset of the form's team."""
    name = request.POST.get("preset_name", "")
    try:
        preset = presets.save(
            user=request.user,
            team=_team(request, request.POST.get("team")),
            name=name,
            choices=provider_choices_from(request.POST),
            replace=request.POST.get("replace") == "1",
        )
    except presets.PresetRefused as refusal:
        ctx = {"preset_error": refusal.message, "preset_exists": refusal.exists}
        return _presets_part(request, status=422, preset_name=name, **ctx)
    return _presets_part(request, selected=preset.pk, saved=preset)


@login_required
@require_GET
def preset_apply(request):
    """The provider panels filled in from a preset (the upload page swaps them in)."""
    preset = presets.preset_of(request.user, request.GET.get("preset", ""))
    slugs, values = presets.panel_values(preset)
    response = render(request, "jobs/_providers.html", {"panels": provider_panels(slugs, values)})
    response["HX-Trigger"] = "preset-applied"  # the preview re-quotes with these options
    return response


@login_required
@require_GET
def fit_apply(request):
    """The provider panels with one set of "What fits the budget" (jobs/fit.py) picked:
    that provider alone, its options from `set-<option>`, the other panels as they were."""
    slug = request.GET.get("set", "")
    values = all_options_from(request.GET)
    if slug not in values:
        raise Http404("No such provider")
    chosen = {k[4:]: v for k, v in request.GET.items() if k.startswith("set-")}
    values[slug] = {**values[slug], **chosen}
    response = render(request, "jobs/_providers.html", {"panels": provider_panels([slug], values)})
    response["HX-Trigger"] = "preset-applied"  # the preview re-quotes, as after a preset
    return response


@login_required
@require_POST
def preset_delete(request):
    preset = presets.preset_of(request.user, request.POST.get("preset", ""))
    name = preset.name
    preset.delete()
    return _presets_part(request, deleted=name)


# --- delete a job's files (jobs/deletion.py) and results as a ZIP (jobs/zips.py) -------------
@login_required
@require_http_methods(["GET", "POST"])
def delete_files(request, pk):
    """GET: the confirmation step (a page, or with htmx its form in the job page); POST:
    delete the files, then back to the job page. A refusal says why, with 403 when the
    job is not the person's to delete and 409 when its state does not allow it."""
    job = _job(request, pk, "created_by", "deleted_by")
    try:
        if request.method == "POST":
            deletion.delete_files(job, by=request.user)
            return redirect(job)
        deletion.check(job, request.user)
        refusal, status = None, 200
    except deletion.Refused as refused:
        refusal, status = refused, 403 if refused.forbidden else 409
    template = "jobs/delete.html#confirm" if request.htmx else "jobs/delete.html"
    return render(request, template, {"job": job, "refusal": refusal}, status=status)


def _no_zip(refusal: zips.Refused) -> HttpResponse:
    return HttpResponse(
        refusal.message, status=refusal.status, content_type="text/plain; charset=utf-8"
    )


@login_required
@require_GET
def batch_zip(request, batch):
    jobs = zips.batch_jobs(request.user, batch)
    if not jobs:
        raise Http404("No such batch")
    try:
        return zips.response(jobs, f"results-{str(batch)[:8]}.zip")
    except zips.Refused as refusal:
        return _no_zip(refusal)


@login_required
@require_GET
def selection_zip(request):
    """The results of the jobs ticked in History: GET /jobs/zip/?job=1&job=2."""
    try:
        jobs = zips.selected_jobs(request.user, request.GET.getlist("job"))
        return zips.response(jobs, f"results-{len(jobs)}-jobs.zip")
    except zips.Refused as refusal:
        return _no_zip(refusal)


def history_jobs(teams, form):
    """The jobs History (and GET /api/v1/jobs) lists: the teams' (`team_id IN (...)`,
    which the (team, -created_at, -id) index serves), filtered, with what a row shows."""
    jobs = (
        Job.objects.filter(team_id__in=[t.pk for t in teams])
        .select_related("created_by", "price_book")
        # The Cost column: the page's charges in one query, not one a row.
        .prefetch_related(Prefetch("ledger", LedgerEntry.objects.filter(kind="charge")))
    )
    return form.filter(jobs)


def _live_url(query, newest) -> str:
    """Where History's first page asks for the jobs made since `newest` (same filters)."""
    query = query.copy()
    query["after"] = history_pages.cursor(newest) if newest else ""
    return f"{reverse('jobs:history_newer')}?{query.urlencode()}"


@login_required
@require_GET
def history_newer(request):
    """History's first page, polling: the rows of the jobs made since its newest row,
    with its filters, to go above it; 204 (nothing to swap) when there are none."""
    teams = list(teams_of(request.user))
    form = HistoryFilter(request.GET, teams=teams)
    new = history_pages.made_since(
        history_jobs(teams, form), request.GET.get("after", ""), size=history_pages.PAGE_SIZE
    )
    if new is None:
        return HttpResponseBadRequest(
            "The 'after' value of this link was not understood: reload History.",
            content_type="text/plain; charset=utf-8",
        )
    if not new:
        return HttpResponse(status=204)
    ctx = {"new_jobs": new[::-1], "live_url": _live_url(request.GET, new[-1])}
    return render(request, "jobs/_history_live.html", ctx)


@login_required
@require_GET
def batch_states(request, batch):
    """{"jobs": {id: state}} of one batch: what notify.js asks while the tab is hidden
    (the page's own polling pauses then). One small query, no rendering."""
    states = Job.objects.for_user(request.user).filter(batch=batch).values_list("pk", "state")
    found = {str(pk): state for pk, state in states[:1000]}
    if not found:
        raise Http404("No such batch")
    return JsonResponse({"jobs": found})
