"""Sandbox for Ximilar's Upscaler (doc 003), at /sandbox/ximilar/ on the real paths:

    POST account/v2/request               submit (answers CREATED)
    GET  account/v2/request               the list of all requests, newest first
    GET  account/v2/request/<id>          the request, with the result once DONE
    GET  account/v2/request/<id>/status   its status only

Ximilar's API is Django REST Framework, so auth, 404, throttling and validation answer
with DRF's bodies and texts: `{"detail": "..."}` for everything but a body that fails
validation, which gets DRF's serializer form `{"<field>": ["<message>", ...]}`.
"""

import base64
import binascii
import functools
import json
import uuid
from datetime import UTC, timedelta

from django.conf import settings
from django.http import JsonResponse
from django.urls import path
from django.utils.crypto import constant_time_compare
from django.views.decorators.csrf import csrf_exempt

from jobs.sandbox import engine
from jobs.sandbox.models import SandboxTask

SLUG = "ximilar"
RESULT_TTL = 24 * 3600  # doc: "The URL is valid for 24 hours."
WORKSPACE = "5a1a9f4e-0c1b-4b5e-9a53-5b1d2c3e4f60"  # the sandbox account's one workspace
WEBHOOK_RETRIES = 0  # the doc promises no redelivery
FACTORS = {"upscale_2x": 2, "upscale_4x": 4, "upscale_8x": 8}
MODES = ("artifact_removal", "ironed_out", "high_fidelity")
MODEL_TYPES = ("classic", "gan")
IMAGE_FORMATS = {"auto": None, "png": "PNG", "jpg": "JPEG", "webp": "WEBP"}
STATES = {"queued": "CREATED", "processing": "PROCESSING", "done": "DONE"}
# A task_failure fault of ERROR or FAILED fails the whole request (INDEX.md); a number
# such as "400" instead leaves it DONE with that code on the record (doc: `_status`).
FAILED_STATES = ("ERROR", "FAILED")
FAILURE_TEXT = "Error while processing the image"

# DRF's texts.
NOT_PROVIDED = "Authentication credentials were not provided."
INVALID_TOKEN = "Invalid token."
NO_CREDENTIALS = "Invalid token header. No credentials provided."
SPACES = "Invalid token header. Token string should not contain spaces."
NOT_FOUND = "Not found."
REQUIRED = "This field is required."
DEFAULT_DETAIL = {
    400: "Malformed request.",
    401: INVALID_TOKEN,
    403: "You do not have permission to perform this action.",
    404: NOT_FOUND,
    503: "Service temporarily unavailable, try again later.",
}
SERVER_ERROR = "A server error occurred."
# Not in the doc (our wording, in DRF's style) for the rules the doc states in prose.
ONE_RECORD = "Only one record is allowed."
NEEDS_IMAGE = "The record needs _url or _base64."
UNREADABLE = "Could not read the image: {reason}"
WEBHOOK_REFUSED = "This sandbox delivers webhooks only to the portal's own /hooks/ address."
TOO_LARGE = "Request body too large."
LENGTH_REQUIRED = "Content length required."
# "List of all requests" (doc 003 shows the call, not its answer): DRF's page-number
# pagination, `{"count", "next", "previous", "results"}` with absolute `next`/`previous`
# links and `?page=N`, newest first, each result as GET /v2/request/{id} answers it.
PAGE_SIZE = 20
INVALID_PAGE = "Invalid page."  # DRF's text
# The doc gives no request size; the sandboxes' default cap applies. Our adapter sends
# `_url` instead of a `_base64` that would not fit (a 25 MB image is ~34 MB as base64).
BODY_MAX_BYTES = engine.BODY_MAX_BYTES


def error(status: int, detail, **headers) -> JsonResponse:
    body = detail if isinstance(detail, dict) else {"detail": detail}
    response = JsonResponse(body, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def throttled(seconds: int) -> JsonResponse:
    unit = "second" if seconds == 1 else "seconds"  # DRF's ngettext
    text = f"Request was throttled. Expected available in {seconds} {unit}."
    return engine.retry_after_headers(error(429, text), seconds)


def authenticate(request) -> JsonResponse | None:
    """DRF's TokenAuthentication: `Authorization: Token <key>`."""
    parts = request.headers.get("Authorization", "").split()
    if not parts or parts[0].lower() != "token":
        return error(401, NOT_PROVIDED, WWW_Authenticate="Token")
    if len(parts) != 2:
        return error(401, NO_CREDENTIALS if len(parts) == 1 else SPACES, WWW_Authenticate="Token")
    if not constant_time_compare(parts[1], settings.SANDBOX_API_KEY):
        return error(401, INVALID_TOKEN, WWW_Authenticate="Token")
    return None


def api(*methods):
    """Every call: the slow and error faults first, then the token, then the method."""

    def wrap(view):
        @csrf_exempt
        @functools.wraps(view)
        def inner(request, *args, **kwargs):
            engine.be_slow(SLUG)
            injected = engine.injected_error(SLUG, "submit" if request.method == "POST" else "poll")
            if injected:
                status, retry_after = injected
                if status == 429:
                    return throttled(retry_after)
                detail = DEFAULT_DETAIL.get(status, SERVER_ERROR)
                return engine.retry_after_headers(error(status, detail), retry_after)
            refused = authenticate(request)  # DRF authenticates before it routes the method
            if refused:
                return refused
            if request.method not in methods:
                return error(405, f'Method "{request.method}" not allowed.')
            return view(request, *args, **kwargs)

        return inner

    return wrap


# --- submit -------------------------------------------------------------------------------
def validate(body) -> tuple[dict, dict]:
    """(errors, record) in DRF's serializer style: every field's problems at once."""
    if not isinstance(body, dict):
        got = type(body).__name__
        return {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {got}."]}, {}
    errors = {}
    choices = {
        "type": ("upscaler",),
        "endpoint": tuple(FACTORS),
        "mode": MODES,
        "model_type": MODEL_TYPES,
        "image_format": tuple(IMAGE_FORMATS),
    }
    for field, allowed in choices.items():
        if field not in body:
            if field in ("type", "endpoint"):
                errors[field] = [REQUIRED]
        elif body[field] not in allowed:
            errors[field] = [f'"{body[field]}" is not a valid choice.']
    quality = body.get("image_quality")
    if quality is not None:
        if not isinstance(quality, int) or isinstance(quality, bool):
            errors["image_quality"] = ["A valid integer is required."]
        elif quality < 1:
            errors["image_quality"] = ["Ensure this value is greater than or equal to 1."]
        elif quality > 100:
            errors["image_quality"] = ["Ensure this value is less than or equal to 100."]
    if "tune_colors" in body and not isinstance(body["tune_colors"], bool):
        errors["tune_colors"] = ["Must be a valid boolean."]
    hook = body.get("webhook")
    if hook is not None:
        if not isinstance(hook, dict):
            kind = type(hook).__name__
            errors["webhook"] = [f'Expected a dictionary of items but got type "{kind}".']
        elif not isinstance(hook.get("endpoint"), str) or not hook["endpoint"]:
            errors["webhook"] = {"endpoint": [REQUIRED]}
        elif not engine.is_our_hook(hook["endpoint"]):
            errors["webhook"] = {"endpoint": [WEBHOOK_REFUSED]}
        elif not isinstance(hook.get("headers", {}), dict):
            errors["webhook"] = {"headers": ["Expected a dictionary of items."]}
    records = body.get("records")
    record = {}
    if records is None:
        errors["records"] = [REQUIRED]
    elif not isinstance(records, list):
        errors["records"] = [f'Expected a list of items but got type "{type(records).__name__}".']
    elif len(records) != 1:
        errors["records"] = [ONE_RECORD]
    elif not isinstance(records[0], dict) or not (
        records[0].get("_url") or records[0].get("_base64")
    ):
        errors["records"] = [NEEDS_IMAGE]
    else:
        record = records[0]
    return errors, record


def read_image(record: dict) -> bytes:
    if record.get("_base64"):
        encoded = str(record["_base64"])
        encoded = encoded.split(",", 1)[-1] if encoded.startswith("data:") else encoded
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise engine.InputError("_base64 is not valid base64") from None
    return engine.fetch_input(str(record["_url"]))


@api("GET", "POST")
def requests(request):
    """One path, two calls: submit (POST) and the list of all requests (GET)."""
    return submit(request) if request.method == "POST" else listing(request)


def submit(request):
    try:
        raw = engine.read_body(request, BODY_MAX_BYTES)
    except engine.BodyRefused as refused:
        detail = {413: TOO_LARGE, 411: LENGTH_REQUIRED}.get(refused.status, DEFAULT_DETAIL[400])
        return error(refused.status, detail)
    try:
        body = json.loads(raw)
    except ValueError as exc:
        return error(400, f"JSON parse error - {exc}")
    errors, record = validate(body)
    if errors:
        return error(400, errors)
    try:
        data = read_image(record)
        info = engine.decode_input(data)
    except engine.InputError as exc:
        return error(400, {"records": [UNREADABLE.format(reason=exc)]})
    factor = FACTORS[body["endpoint"]]
    # Doc: no image_format keeps the input's nature: PNG with alpha, JPEG otherwise.
    fmt = IMAGE_FORMATS[body.get("image_format", "auto")] or ("PNG" if info.has_alpha else "JPEG")
    # The echo keeps the request as sent, minus the image bytes.
    echo = {**body, "records": [{k: v for k, v in record.items() if k != "_base64"}]}
    hook = body.get("webhook") or {}
    task = engine.create_task(
        SLUG,
        data,
        webhook_url=hook.get("endpoint", ""),
        width=info.width * factor,
        height=info.height * factor,
        format=fmt,
        input_width=info.width,
        input_height=info.height,
        request=echo,
        record_id=engine.new_id(),
        request_id=engine.new_id(),
        label=f"{factor}x {body.get('model_type', '').upper()}".strip(),
    )
    engine.schedule_webhook(task, webhook_body, hook.get("headers") or {}, retries=WEBHOOK_RETRIES)
    answer = {
        "id": task.public_id,
        "request": echo,
        "type": "upscaler",
        "status": "CREATED",
        "created": stamp(task.created_at),
        "workspace": WORKSPACE,
    }
    return JsonResponse(answer, status=201)


# --- results -----------------------------------------------------------------------------
def stamp(dt) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def state(task: SandboxTask) -> str:
    phase = task.phase()
    if phase == "failed":
        return task.failure_code if task.failure_code in FAILED_STATES else "DONE"
    return STATES.get(phase, "ERROR")


def record_of(task: SandboxTask) -> dict:
    """The record as it comes back once the request has ended."""
    params = task.params
    request_id = params["request_id"]
    record = dict(params["request"]["records"][0])  # `_url` stays when it was given
    record.update(_width=params["input_width"], _height=params["input_height"])
    if task.phase() == "failed":
        code = int(task.failure_code) if task.failure_code.isdigit() else 500
        record["_status"] = {"code": code, "text": FAILURE_TEXT, "request_id": request_id}
        return record
    record["_status"] = {"code": 200, "text": "OK", "request_id": request_id}
    record.update(
        _upscaled_width=params["width"],
        _upscaled_height=params["height"],
        _upscaled_image_url=engine.result_url(task, RESULT_TTL),
    )
    return record


def result_body(task: SandboxTask) -> dict:
    phase = task.phase()
    ended = phase in ("done", "failed")
    if ended:
        modified = task.completes_at
    elif phase == "processing":
        modified = task.created_at + timedelta(seconds=task.latency * 0.2)
    else:
        modified = task.created_at
    return {
        "id": task.public_id,
        "created": stamp(task.created_at),
        "modified": stamp(modified),
        "request": task.params["request"],
        # Not in the doc: while pending there is no response yet (null).
        "response": {"records": [record_of(task)]} if ended else None,
        "type": "upscaler",
        "status": state(task),
        "workspace": WORKSPACE,
    }


def webhook_body(task: SandboxTask) -> dict:
    # The doc's webhook record carries `_id`; its GET example does not.
    record = {"_id": task.params["record_id"], **record_of(task)}
    return {
        "status": state(task),
        "id": task.public_id,
        "type": "upscaler",
        "response": {"records": [record]},
    }


def find(request_id: str) -> SandboxTask | None:
    try:
        uuid.UUID(request_id)
    except ValueError:
        return None
    return SandboxTask.objects.filter(provider=SLUG, public_id=request_id).first()


def listing(request):
    tasks = SandboxTask.objects.filter(provider=SLUG).order_by("-created_at", "-pk")
    count = tasks.count()
    pages = max(1, -(-count // PAGE_SIZE))
    try:
        number = int(request.GET.get("page", 1))
    except ValueError:
        return error(404, INVALID_PAGE)
    if not 1 <= number <= pages:
        return error(404, INVALID_PAGE)

    def link(n):
        if not 1 <= n <= pages:
            return None
        # DRF drops the parameter for the first page.
        return request.build_absolute_uri(request.path + (f"?page={n}" if n > 1 else ""))

    start = (number - 1) * PAGE_SIZE
    page = tasks[start : start + PAGE_SIZE]
    return JsonResponse(
        {
            "count": count,
            "next": link(number + 1),
            "previous": link(number - 1),
            "results": [result_body(task) for task in page],
        }
    )


@api("GET")
def detail(request, request_id):
    task = find(request_id)
    return JsonResponse(result_body(task)) if task else error(404, NOT_FOUND)


@api("GET")
def status(request, request_id):
    task = find(request_id)
    if task is None:
        return error(404, NOT_FOUND)
    return JsonResponse({"id": task.public_id, "status": state(task)})


urlpatterns = [
    path("account/v2/request", requests, name="sandbox-ximilar-submit"),
    path("account/v2/request/<str:request_id>", detail, name="sandbox-ximilar-detail"),
    path("account/v2/request/<str:request_id>/status", status, name="sandbox-ximilar-status"),
]
