"""Sandbox for fal.ai's queue, serving clarityai/crystal-upscaler (doc 002).

The real paths under the queue base (https://queue.fal.run):
  POST clarityai/crystal-upscaler[?fal_webhook=URL]      submit
  GET  clarityai/crystal-upscaler/requests/<id>/status   202 IN_QUEUE / IN_PROGRESS, 200 COMPLETED
  GET  clarityai/crystal-upscaler/requests/<id>          the result
  PUT  clarityai/crystal-upscaler/requests/<id>/cancel   202 CANCELLATION_REQUESTED / 400
Answers are shaped so the real `fal-client` package could talk to it: absolute URLs after
submit, `logs` in every status body, `queue_position` while IN_QUEUE.

One simplification: real fal queues any JSON and reports a model's validation error when
the request completes; the sandbox refuses a bad body at once with the same 422 shape.
"""

import base64
import binascii
import functools
import json
import time

from django.conf import settings
from django.core.files.storage import default_storage
from django.http import JsonResponse
from django.urls import path, reverse
from django.utils.crypto import constant_time_compare
from django.views.decorators.csrf import csrf_exempt

from jobs.sandbox import engine
from jobs.sandbox.models import SandboxTask

SLUG = "fal"
MODEL = "clarityai/crystal-upscaler"  # doc 002, "Model ID"
# INDEX.md (fal): output is capped at 100 MP and 65535 px a side.
MAX_OUTPUT_PIXELS = 100_000_000
MAX_OUTPUT_SIDE = 65535
# fal documents no request size; the sandboxes' default cap applies. Our adapter sends a
# link instead of a data: URI that would not fit (a 25 MB image is ~34 MB as base64).
BODY_MAX_BYTES = engine.BODY_MAX_BYTES
WEBHOOK_REFUSED = "This sandbox delivers webhooks only to the portal's own /hooks/ address"
RESULT_TTL = 3600  # assumption (INDEX.md): fal's result links last one hour
WEBHOOK_RETRIES = 2  # real fal retries 10 times over 2 hours; compressed for the sandbox
# Assumption: the model answers PNG (fal's own example result is a .png).
OUTPUT_FORMAT = "PNG"

# fal's answers when the key is missing, wrong, or the account is locked.
NO_AUTH = "Authentication is required to perform this action"
BAD_KEY = "No user found for Key ID and Secret"
LOCKED = (
    "User is locked. Reason: Exhausted balance. Top up your balance at fal.ai/dashboard/billing."
)
# Injected faults: fal's flat request-error bodies (detail + error_type) per status.
FAULT_BODIES = {
    429: {"detail": "Too many requests: the concurrent request limit was reached."},
    500: {"detail": "Internal server error", "error_type": "internal_error"},
    502: {
        "detail": "Incomplete response from the runner",
        "error_type": "runner_incomplete_response",
    },
    503: {"detail": "No runner available", "error_type": "runner_scheduling_failure"},
    504: {"detail": "Request timed out", "error_type": "request_timeout"},
}
# A task failing with fal's `error_type` (the `task_failure` fault): its message and the
# status the result URL answers with (the "typical status" in fal's error-type table).
FAILURES = {
    "request_timeout": ("Request timed out", 504),
    "startup_timeout": ("Runner did not start in time", 504),
    "runner_scheduling_failure": ("No runner could be allocated", 503),
    "runner_disconnected": ("Runner disconnected during processing", 503),
    "runner_server_error": ("Runner encountered an internal server error", 500),
    "client_cancelled": ("Request was cancelled by the client", 499),
}


# --- helpers --------------------------------------------------------------------------
def _detail(status: int, detail, headers=None) -> JsonResponse:
    response = JsonResponse({"detail": detail}, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _invalid(field, msg: str, kind: str, **ctx) -> dict:
    """One entry of fal's (pydantic's) 422 `detail` list."""
    item = {"loc": ["body", field] if field else ["body"], "msg": msg, "type": kind}
    if ctx:
        item["ctx"] = ctx
    return item


def _gate(request, call: str) -> JsonResponse | None:
    """Faults, then auth: what every call goes through first."""
    engine.be_slow(SLUG)
    injected = engine.injected_error(SLUG, call)
    if injected:
        status, retry_after = injected
        return engine.retry_after_headers(_fault(status), retry_after)
    header = request.headers.get("Authorization", "")
    if not header:
        return _detail(401, NO_AUTH)
    scheme, _, key = header.partition(" ")
    if scheme != "Key" or not constant_time_compare(key.strip(), settings.SANDBOX_API_KEY):
        return _detail(401, BAD_KEY)
    return None


def _fault(status: int) -> JsonResponse:
    if status == 401:
        return _detail(401, BAD_KEY)
    if status == 403:
        return _detail(403, LOCKED)
    if status == 404:
        return _detail(404, "Request not found")
    if status in (400, 422):
        msg = "Failed to load the image. Please ensure the image file is not corrupted."
        return _detail(status, [_invalid("image_url", msg, "image_load_error")])
    body = FAULT_BODIES.get(status, {"detail": "Internal server error"})
    response = JsonResponse(body, status=status)
    if body.get("error_type"):
        response["X-Fal-Error-Type"] = body["error_type"]
    return response


def _body_refused(status: int) -> JsonResponse:
    if status == 413:
        return _detail(413, "Request body too large")
    if status == 411:
        return _detail(411, "Content length required")
    return _detail(400, "Invalid request body")


def _task(request_id: str) -> SandboxTask | None:
    return SandboxTask.objects.filter(provider=SLUG, public_id=request_id).first()


def _not_found() -> JsonResponse:
    return _detail(404, "Request not found")


def _cancel_not_found() -> JsonResponse:
    return JsonResponse({"status": "NOT_FOUND"}, status=404)


def _per_request(method: str, not_found):
    """What every view about one request does first: method, auth and faults, lookup."""

    def wrap(view):
        @csrf_exempt
        @functools.wraps(view)
        def inner(request, request_id):
            if request.method != method:
                return _detail(405, "Method Not Allowed")
            refused = _gate(request, "poll")
            if refused:
                return refused
            task = _task(request_id)
            if task is None:
                return not_found()
            return view(request, task)

        return inner

    return wrap


def _urls(request, task: SandboxTask) -> dict:
    def absolute(name):
        return request.build_absolute_uri(reverse(name, args=[task.public_id]))

    return {
        "response_url": absolute("sandbox-fal-result"),
        "status_url": absolute("sandbox-fal-status"),
        "cancel_url": absolute("sandbox-fal-cancel"),
    }


def _failure(task: SandboxTask) -> tuple[str, str, int]:
    """(error_type, message, HTTP status) of a task that ended failed or canceled."""
    code = "client_cancelled" if task.phase() == "canceled" else task.failure_code
    message, status = FAILURES.get(code, (f"Request failed: {code}", 500))
    return code, message, status


def _result_body(task: SandboxTask) -> dict:
    url = engine.result_url(task, RESULT_TTL)  # makes the output on first use
    task.refresh_from_db()
    return {
        "images": [
            {
                "url": url,
                "content_type": "image/png",
                "file_name": f"{task.public_id}.png",
                "file_size": default_storage.size(task.output_name),
                "width": task.output_width,
                "height": task.output_height,
            }
        ]
    }


def webhook_body(task: SandboxTask) -> dict:
    """What fal POSTs to `fal_webhook` when the request completes."""
    body = {"request_id": task.public_id, "gateway_request_id": task.public_id}
    if task.phase() == "done":
        return {**body, "status": "OK", "payload": _result_body(task), "error": None}
    code, message, status = _failure(task)
    # fal: `error` holds a message, `payload` the error details.
    return {
        **body,
        "status": "ERROR",
        "payload": {"detail": message, "error_type": code},
        "error": f"Invalid status code: {status}",
    }


# --- validation -------------------------------------------------------------------------
def _number(body: dict, field: str, default: float, low: float, high: float, errors: list):
    value = body.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        errors.append(_invalid(field, "Input should be a valid number", "float_type"))
        return default
    if value < low:
        errors.append(
            _invalid(
                field,
                f"Input should be greater than or equal to {low}",
                "greater_than_equal",
                ge=low,
            )
        )
    elif value > high:
        errors.append(
            _invalid(
                field, f"Input should be less than or equal to {high}", "less_than_equal", le=high
            )
        )
    return float(value)


class OutputTooLarge(Exception):
    def __init__(self, width: int, height: int):
        super().__init__(f"{width}x{height}")
        self.width, self.height = width, height


def _output_limit(scale: float):
    """fal's output limit, checked on the input's header before its pixels are decoded."""

    def check(width: int, height: int) -> None:
        width, height = round(width * scale), round(height * scale)
        if width * height > MAX_OUTPUT_PIXELS or max(width, height) > MAX_OUTPUT_SIDE:
            raise OutputTooLarge(width, height)

    return check


def _input_bytes(image_url: str) -> bytes:
    """The image behind `image_url`: a data: URI, or an http(s) URL fetched like fal does."""
    if image_url.startswith("data:"):
        head, _, payload = image_url.partition(",")
        if ";base64" not in head:
            raise engine.InputError("only base64 data URIs are supported")
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise engine.InputError("the data URI is not valid base64") from None
    if image_url.startswith(("http://", "https://")):
        return engine.fetch_input(image_url)
    raise engine.InputError("the URL is neither http(s) nor a data URI")


# --- views -------------------------------------------------------------------------------
@csrf_exempt
def queue_submit(request):
    if request.method != "POST":
        return _detail(405, "Method Not Allowed")
    refused = _gate(request, "submit")
    if refused:
        return refused
    try:
        raw = engine.read_body(request, BODY_MAX_BYTES)
    except engine.BodyRefused as refused:
        return _body_refused(refused.status)
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        return _detail(422, [_invalid(None, "JSON decode error", "json_invalid")])
    if not isinstance(body, dict):
        return _detail(422, [_invalid(None, "Input should be a valid dictionary", "dict_type")])

    errors = []
    image_url = body.get("image_url")
    if image_url is None:
        errors.append(_invalid("image_url", "Field required", "missing"))
    elif not isinstance(image_url, str):
        errors.append(_invalid("image_url", "Input should be a valid string", "string_type"))
    scale = _number(body, "scale_factor", 2.0, 1, 200, errors)
    creativity = _number(body, "creativity", 0.0, 0, 10, errors)
    hook = request.GET.get("fal_webhook", "")
    if hook and not engine.is_our_hook(hook):
        errors.append(
            {"loc": ["query", "fal_webhook"], "msg": WEBHOOK_REFUSED, "type": "value_error"}
        )
    if errors:
        return _detail(422, errors)

    try:
        data = _input_bytes(image_url)
        info = engine.decode_input(data, limit=_output_limit(scale))
    except engine.InputError as exc:
        kind = "file_download_error" if image_url.startswith("http") else "image_load_error"
        msg = f"Failed to load the image ({exc}). Please ensure it is a valid image."
        return _detail(422, [_invalid("image_url", msg, kind)])
    except OutputTooLarge as too_large:
        size = f"{too_large.width}x{too_large.height}"
        msg = f"The upscaled image ({size}) would exceed the maximum of 100 megapixels."
        return _detail(
            422, [_invalid("scale_factor", msg, "image_too_large", max_pixels=MAX_OUTPUT_PIXELS)]
        )
    width, height = round(info.width * scale), round(info.height * scale)

    task = engine.create_task(
        SLUG,
        data,
        webhook_url=hook,
        width=width,
        height=height,
        format=OUTPUT_FORMAT,
        scale_factor=scale,
        creativity=creativity,
        label=f"{scale:g}x, creativity {creativity:g}",
    )
    engine.schedule_webhook(
        task,
        webhook_body,
        # Real fal signs with Ed25519 (X-Fal-Webhook-Signature over these and the body).
        # The portal authenticates by the per-job token in the URL and confirms by
        # polling, so the sandbox sends the id and timestamp only, and no signature.
        headers={
            "X-Fal-Webhook-Request-Id": task.public_id,
            "X-Fal-Webhook-User-Id": "sandbox",
            "X-Fal-Webhook-Timestamp": str(int(time.time())),
        },
        retries=WEBHOOK_RETRIES,
    )
    return JsonResponse(
        {
            "status": "IN_QUEUE",
            "request_id": task.public_id,
            **_urls(request, task),
            "queue_position": 0,
        }
    )


@_per_request("GET", _not_found)
def queue_status(request, task):
    urls = _urls(request, task)
    phase = task.phase()
    with_logs = request.GET.get("logs") in ("1", "true")
    if phase == "queued":
        # Every sandbox request gets its own runner: nobody is ahead in the queue.
        body = {"status": "IN_QUEUE", "queue_position": 0, "logs": []}
        return JsonResponse({**body, "response_url": urls["response_url"]}, status=202)
    log = [_log("Upscaling the image")] if with_logs else []
    if phase == "processing":
        return JsonResponse(
            {"status": "IN_PROGRESS", "logs": log, "response_url": urls["response_url"]},
            status=202,
        )
    body = {
        "status": "COMPLETED",
        "logs": log,
        "response_url": urls["response_url"],
        "metrics": {"inference_time": task.latency},
    }
    if phase in ("failed", "canceled"):
        code, message, _status = _failure(task)
        body.update(error=message, error_type=code, metrics={})  # no inference finished
    return JsonResponse(body)


@_per_request("GET", _not_found)
def queue_result(request, task):
    phase = task.phase()
    if phase in ("queued", "processing"):
        return _detail(400, "Request is still in progress")
    if phase in ("failed", "canceled"):
        code, message, status_code = _failure(task)
        response = JsonResponse({"detail": message, "error_type": code}, status=status_code)
        response["X-Fal-Error-Type"] = code
        return response
    return JsonResponse(_result_body(task))


@_per_request("PUT", _cancel_not_found)
def queue_cancel(request, task):
    if task.phase() not in ("queued", "processing"):
        return JsonResponse({"status": "ALREADY_COMPLETED"}, status=400)
    SandboxTask.objects.filter(pk=task.pk, canceled_at__isnull=True).update(
        canceled_at=engine.now()
    )
    return JsonResponse({"status": "CANCELLATION_REQUESTED"}, status=202)


def _log(message: str) -> dict:
    return {
        "message": message,
        "level": "INFO",
        "source": "user",
        "timestamp": engine.now().isoformat(),
    }


urlpatterns = [
    path(MODEL, queue_submit, name="sandbox-fal-submit"),
    path(f"{MODEL}/requests/<str:request_id>/status", queue_status, name="sandbox-fal-status"),
    path(f"{MODEL}/requests/<str:request_id>/cancel", queue_cancel, name="sandbox-fal-cancel"),
    path(f"{MODEL}/requests/<str:request_id>", queue_result, name="sandbox-fal-result"),
]
