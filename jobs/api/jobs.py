"""Jobs through the API: create (multipart upload or an image URL), read, list with
History's filters, cancel, run again, download the result. Every step goes through the
functions the pages use (jobs.intake, jobs.history, jobs.forms.HistoryFilter,
jobs.pipeline.cancel, jobs.views.result_download): the same checks, the same words."""

import asyncio
import datetime
import uuid
from decimal import Decimal
from urllib.parse import unquote, urlencode, urlsplit

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFilesSent
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import Http404
from django.http.multipartparser import MultiPartParserError
from ninja import Field, Query, Router, Schema, Status

from billing import money
from billing.teams import teams_of
from jobs import deletion, history, http, intake, pipeline, quotes, views
from jobs.api.catalog import ProviderChoice, Value, is_id, quote_team
from jobs.api.idempotency import claim_of, idempotent
from jobs.api.problems import Problem, ProblemOut
from jobs.errors import ProviderError
from jobs.forms import HistoryFilter, provider_choices_from
from jobs.imaging import human_bytes
from jobs.models import Job
from jobs.providers import all_providers

router = Router(tags=["Jobs"])
FORMS = ("multipart/form-data", "application/x-www-form-urlencoded")
FETCH_DEADLINE = 30.0  # seconds to fetch an image_url


# --- what a job looks like ------------------------------------------------------------------
class EventOut(Schema):
    at: datetime.datetime
    state: str
    detail: str


class ImageOut(Schema):
    width: int | None = None
    height: int | None = None
    format: str = ""
    bytes: int | None = None


class CostOut(Schema):
    amount: Decimal  # the charge once charged, else the quote
    price: str  # the amount in words: "$0.12", "free"
    status: str  # "quoted" (held against the budget) or "charged"
    quoted: Decimal
    charged: Decimal | None = None
    why: str = ""
    rule: str = ""  # the price book's rule in words (GET /jobs/{id} only)
    verified: bool = True
    sandbox: bool  # not billed: what a real provider would have cost
    # "possibly_billed": an admin checks whether the provider billed a job we could not
    # finish; then "charged" or "not_billed".
    billing: str = ""


class JobOut(Schema):
    id: int
    url: str  # the job's page
    state: str
    state_label: str
    batch: uuid.UUID
    team: int
    created_by: str
    created_at: datetime.datetime
    finished_at: datetime.datetime | None = None
    provider: str
    options: dict[str, Value]
    options_label: str
    sandbox: bool
    input_name: str
    input: ImageOut
    predicted: ImageOut
    output: ImageOut | None = None
    cost: CostOut
    result: str | None = None  # the download, once there is one
    error_code: str = ""
    error_message: str = ""
    source_job: int | None = None  # "run again" of this job
    reused_from: int | None = None  # the job whose result this one reuses (free)
    kept: bool
    deleted: bool  # a person deleted its files
    files_gone: str = ""  # why its files are gone (deleted or expired), in words
    webhook_url: str = ""
    # Only on GET /jobs/{id}:
    events: list[EventOut] | None = None
    webhook_deliveries: int | None = None


def result_link(job: Job) -> str | None:
    if job.state == Job.State.SUCCEEDED and job.output_file and not job.files_expired_at:
        return f"/api/v1/jobs/{job.pk}/result"
    return None


def cost_out(job: Job, *, full: bool = False) -> dict:
    """The job's cost as its page's cost card says it (`quotes.cost`: one query for the
    charge and its price book) or, in lists, as History's row does (`job.price`, from the
    charges the list prefetched)."""
    if full:
        cost = quotes.cost(job)
        charge, verified, rule, billing = cost.charge, cost.verified, cost.rule, cost.billing
    else:
        charge, verified, rule, billing = job.charge, job.price.verified, "", job.billing_status
    amount = charge.amount if charge else job.quoted_amount
    return {
        "amount": amount,
        "price": money.price(amount),
        "status": "charged" if charge else "quoted",
        "quoted": job.quoted_amount,
        "charged": charge.amount if charge else None,
        "why": charge.explanation if charge else job.quote_explanation,
        "rule": rule,
        "verified": verified,
        "sandbox": job.sandbox,
        "billing": billing,
    }


def job_out(job: Job, *, full: bool = False) -> dict:
    """A job as the API shows it; `full` adds its timeline and webhook deliveries (one
    query each: the list leaves them out)."""
    out = {
        "id": job.pk,
        "url": job.get_absolute_url(),
        "state": job.state,
        "state_label": job.get_state_display(),
        "batch": job.batch,
        "team": job.team_id,
        "created_by": job.created_by.get_username() if job.created_by_id else "",
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "provider": job.provider,
        "options": job.options,
        "options_label": job.options_label,
        "sandbox": job.sandbox,
        "input_name": job.input_name,
        "input": {
            "width": job.input_width,
            "height": job.input_height,
            "format": job.input_format,
            "bytes": job.input_bytes,
        },
        "predicted": {"width": job.predicted_width, "height": job.predicted_height},
        "output": {
            "width": job.output_width,
            "height": job.output_height,
            "format": job.output_format,
            "bytes": job.output_bytes,
        }
        if job.output_width
        else None,
        "cost": cost_out(job, full=full),
        "result": result_link(job),
        "error_code": job.error_code,
        "error_message": job.error_message,
        "source_job": job.source_job_id,
        "reused_from": job.reused_from_id,
        "kept": job.kept,
        "deleted": job.deleted_at is not None,
        "files_gone": deletion.gone_note(job) if job.files_expired_at else "",
        "webhook_url": job.webhook_url,
    }
    if full:
        out["events"] = [
            {"at": e.at, "state": e.state, "detail": e.detail} for e in job.events.all()
        ]
        out["webhook_deliveries"] = job.deliveries.count()
    return out


class CreatedOut(Schema):
    batch: uuid.UUID
    jobs: list[JobOut]


def _job(request, pk: int, *related) -> Job:
    """A job of one of the user's teams; 404 for any other (it does not exist for them)."""
    if not is_id(pk):
        raise Http404("No such job, or not one of your teams'.")
    job = (
        Job.objects.for_user(request.user)
        .select_related("created_by", "price_book", *related)
        .filter(pk=pk)
        .first()
    )
    if job is None:
        raise Http404("No such job, or not one of your teams'.")
    return job


# --- create ---------------------------------------------------------------------------------
def _form_schema(with_files: bool) -> dict:
    """The create form as the upload page sends it, made from the provider registry."""
    props = {
        "provider": {
            "type": "array",
            "items": {"type": "string", "enum": [p.slug for p in all_providers()]},
            "description": "One or more providers (repeat the field).",
        },
        "image_url": {
            "type": "string",
            "maxLength": 2000,
            "description": "Instead of files: a public https address of the image.",
        },
        "team": {"type": "integer", "description": "Your team's id (default: your first)."},
        "reuse": {
            "type": "boolean",
            "default": True,
            "description": "false: run again even where the team already has this image "
            "done with the same provider and options (else that result is reused, free).",
        },
        "webhook_url": {
            "type": "string",
            "maxLength": 2000,
            "description": "POSTed a signed event when each job and the batch end.",
        },
    }
    if with_files:
        props["images"] = {
            "type": "array",
            "items": {"type": "string", "format": "binary"},
            "description": "One or more images (repeat the field).",
        }
    for provider in all_providers():
        for opt in provider.options:
            if opt.is_choice:
                schema = {"type": "string", "enum": [str(v) for v, _ in opt.choices]}
            else:
                schema = {"type": "number", "minimum": opt.minimum, "maximum": opt.maximum}
            props[f"{provider.slug}-{opt.name}"] = {**schema, "description": opt.label}
    return {"type": "object", "properties": props, "required": ["provider"]}


def _create_body() -> dict:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": _form_schema(True)},
                "application/x-www-form-urlencoded": {"schema": _form_schema(False)},
            },
        }
    }


def _form(request):
    """(fields, files) of a form body; Problems for what is not one or too large."""
    if request.content_type not in FORMS:
        raise Problem(
            415,
            "Send the images as multipart/form-data, as the upload form does (or an "
            "image_url field).",
        )
    try:
        return request.POST, request.FILES
    except (RequestDataTooBig, TooManyFilesSent):
        raise Problem(
            413,
            f"The request is too large: at most {settings.DATA_UPLOAD_MAX_NUMBER_FILES} "
            f"files of {human_bytes(settings.MAX_UPLOAD_BYTES)} each.",
        ) from None
    except MultiPartParserError:
        raise Problem(422, "The multipart body could not be read.") from None


def refused(errors: list[str], status: int = 422):
    detail = (
        "Nothing was uploaded: " + errors[0]
        if len(errors) == 1
        else (f"Nothing was uploaded: {len(errors)} things to fix.")
    )
    return Problem(status, detail, errors=errors)


def image_url_hosts() -> frozenset:
    """Hosts an image_url may name though private or plain http: none. (The tests widen
    this, and only this, to reach a server on loopback.)"""
    return frozenset()


def fetch_image(url: str) -> SimpleUploadedFile:
    """The image at `url`, through the door's download (size cap, deadline, no private
    addresses, each redirect checked again), as an upload."""

    async def go():
        async with http.client() as client:
            return await http.download(
                client,
                url,
                allowed_hosts=image_url_hosts(),
                who="the image_url",
                max_bytes=settings.MAX_UPLOAD_BYTES,
                deadline=FETCH_DEADLINE,
            )

    try:
        data = asyncio.run(go())
    except ProviderError as err:
        if err.code == "result_too_large":
            limit = human_bytes(settings.MAX_UPLOAD_BYTES)
            message = f"image_url: the image is larger than {limit}, the upload limit."
            raise refused([message], 413) from None
        if err.code == "result_expired":
            said = f"the address answered {err.status}: there is no image there."
        else:
            said = err.message[:1].lower() + err.message[1:]
        raise refused([f"image_url: {said}"]) from None
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1]) or "image"
    return SimpleUploadedFile(intake.display_name(name), data)


def check_webhook_url(url: str) -> str:
    """The webhook URL if the outbound door would deliver to it, else a Problem."""
    if not url:
        return ""
    parts = urlsplit(url)
    error = ""
    if len(url) > 2000 or parts.scheme not in ("http", "https") or not parts.hostname:
        error = "webhook_url must be an http(s) address."
    elif parts.username or parts.password:
        error = "webhook_url must not carry a user name or password."
    else:
        try:
            asyncio.run(http.pin(url, http.callback_rules()))
        except ProviderError as err:
            error = f"webhook_url: {err.message}"
        except ValueError:
            error = "webhook_url must be an http(s) address."
    if error:
        raise refused([error])
    return url


@router.post(
    "/jobs",
    response={201: CreatedOut, 401: ProblemOut, 413: ProblemOut, 415: ProblemOut, 422: ProblemOut},
    openapi_extra=_create_body(),
)
@idempotent(recover=lambda made: created_answer(made))
def create(request):
    """Upload images (or name one by image_url) to upscale with one or more providers:
    the upload form's fields. Every job is checked before anything is stored; a refusal
    lists each problem in the upload page's words."""
    data, files = _form(request)
    team = quote_team(request.user, data.get("team") or None)
    webhook_url = check_webhook_url(data.get("webhook_url", "").strip())
    uploads = files.getlist("images")
    url = data.get("image_url", "").strip()
    if url and uploads:
        raise refused(["Send images or an image_url, not both."])
    if url:
        uploads = [fetch_image(url)]
    try:
        created = intake.submit_uploads(
            user=request.user,
            team=team,
            files=uploads,
            choices=provider_choices_from(data),
            reuse=data.get("reuse", "").strip().lower() not in ("false", "0", "no", "off"),
            caller=caller(request, webhook_url),
        )
    except intake.SubmissionRefused as refusal:
        too_large = any(f.size > settings.MAX_UPLOAD_BYTES for f in uploads)
        raise refused(refusal.errors, 413 if too_large else 422) from None
    return Status(*created_answer(created))


def created_answer(created: list) -> tuple[int, dict]:
    """201 and the jobs made: what create and rerun answer (and what a replay rebuilds)."""
    return 201, {"batch": created[0].batch, "jobs": [job_out(j) for j in created]}


def caller(request, webhook_url: str) -> dict:
    """What the jobs keep of the API call that made them: its token (whose secret signs
    their events) and where to send the events."""
    return {
        "api_token": getattr(request, "api_token", None),
        "webhook_url": webhook_url,
        "idempotent_request": claim_of(request),
    }


# --- read -----------------------------------------------------------------------------------
# Any job id: not an integer is 422 (the path's validation), not yours 404.
ONE_JOB = {401: ProblemOut, 404: ProblemOut, 422: ProblemOut}


@router.get("/jobs/{job_id}", response={200: JobOut, **ONE_JOB})
def get_job(request, job_id: int):
    """One job: its state, timeline, sizes, options, cost and result link."""
    return job_out(_job(request, job_id), full=True)


class ListFilters(Schema):
    # Strings, as History's URL carries them: the form says what is wrong with a value.
    q: str = Field("", description="Part of the file name.")
    state: str = Field("", description="One of the job states, e.g. succeeded.")
    provider: str = Field("", description="A provider's slug.")
    team: str = Field("", description="One of your teams' ids.")
    person: str = Field("", description="The id of a person in your teams.")
    since: str = Field("", description="From this day (YYYY-MM-DD).")
    until: str = Field("", description="To this day, included (YYYY-MM-DD).")
    batch: str = Field("", description="The jobs of one submission.")
    older: str = Field("", description="The `next` cursor of the page before.")
    newer: str = Field("", description="The `previous` cursor of the page after.")
    limit: int = Field(history.PAGE_SIZE, ge=1, le=100)


class JobPage(Schema):
    items: list[JobOut]
    next: str | None = None  # the URL of the older jobs
    previous: str | None = None  # the URL of the newer jobs; None on the first page


def _filtered(request, teams, f: ListFilters):
    for name in ("person", "team"):  # ids past 64 bits: refused before the form asks the db
        value = getattr(f, name)
        if value.isdigit() and not is_id(value):
            raise Problem(
                422, "The filter has values we cannot use.", errors=[f"{name}: no such id"]
            )
    form = HistoryFilter(request.GET or None, teams=teams)
    errors = [f"{name}: {err[0]}" for name, err in form.errors.items()] if form.is_bound else []
    if f.team and "team" not in form.fields and f.team != str(teams[0].pk if teams else ""):
        errors.append(f"team: '{f.team}' is not one of the choices")  # HistoryFilter's words
    for name in ("older", "newer"):
        value = getattr(f, name)
        if value and history.decode(value) is None:
            errors.append(f"{name}: {history.BAD_CURSOR}")
    jobs = views.history_jobs(teams, form)
    if f.batch:
        try:
            jobs = jobs.filter(batch=uuid.UUID(f.batch))
        except ValueError:
            errors.append("batch: not a batch id")
    if errors:
        raise Problem(422, "The filter has values we cannot use.", errors=errors)
    return jobs


@router.get("/jobs", response={200: JobPage, 401: ProblemOut, 422: ProblemOut})
def list_jobs(request, filters: Query[ListFilters]):
    """Your teams' jobs, newest first, with History's filters; a page at a time (follow
    `next` for older jobs, `previous` for newer)."""
    teams = list(teams_of(request.user))
    jobs = _filtered(request, teams, filters)
    page = history.page(jobs, older=filters.older, newer=filters.newer, size=filters.limit)
    query = request.GET.copy()
    for name in ("older", "newer"):
        query.pop(name, None)

    def link(**cursor):
        ((name, value),) = cursor.items()
        return f"/api/v1/jobs?{urlencode({**query.dict(), name: value})}" if value else None

    return {
        "items": [job_out(job) for job in page.jobs],
        "next": link(older=page.older),
        "previous": link(newer=page.newer),
    }


# --- act on one -----------------------------------------------------------------------------
@router.post(
    "/jobs/{job_id}/cancel",
    response={200: JobOut, 409: ProblemOut, **ONE_JOB},
)
def cancel(request, job_id: int):
    """Stop a job that has not ended (the provider is asked to stop it where it can)."""
    job = _job(request, job_id)
    if not pipeline.cancel(job, by=request.user):
        job.refresh_from_db()
        raise Problem(409, f"Job {job.pk} has already ended ({job.get_state_display()}).")
    return job_out(_job(request, job_id), full=True)


class RerunIn(Schema):
    # Empty: the job's own provider and options.
    providers: list[ProviderChoice] = Field([], max_length=20)


@router.post(
    "/jobs/{job_id}/rerun",
    response={201: CreatedOut, **ONE_JOB},
)
@idempotent(recover=lambda made: created_answer(made))
def rerun(request, job_id: int, body: RerunIn):
    """New jobs from this job's stored original, with these providers and options (or its
    own): the job page's "Run again"."""
    job = _job(request, job_id, "team")
    choices = [(c.provider, {k: str(v) for k, v in c.options.items()}) for c in body.providers]
    try:
        created = intake.rerun(
            job,
            user=request.user,
            choices=choices or [(job.provider, job.options)],
            caller=caller(request, ""),
        )
    except intake.SubmissionRefused as refusal:
        raise refused(refusal.errors) from None
    return Status(*created_answer(created))


@router.get(
    "/jobs/{job_id}/result",
    response={
        200: None,
        302: None,
        410: ProblemOut,
        **ONE_JOB,
    },
    openapi_extra={
        "responses": {
            200: {
                "description": "The result file, as an attachment.",
                "content": {
                    "image/png": {"schema": {"type": "string", "format": "binary"}},
                    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                    "image/webp": {"schema": {"type": "string", "format": "binary"}},
                },
            },
            302: {"description": "With media in a bucket: a short-lived link to the file."},
        }
    },
)
def result(request, job_id: int):
    """The result file (the page's Download): 404 while there is none, 410 once its files
    were deleted or expired."""
    job = _job(request, job_id)
    answer = views.result_download(job)
    if answer.status_code == 410:
        raise Problem(410, deletion.gone_note(job))
    return answer
