"""Sandbox for APIXO Image Upscaler (doc 004), at /sandbox/apixo/ on the real paths:
POST generateTask/image-upscaler and GET statusTask/image-upscaler?taskId=.

Everything answers in APIXO's envelope `{"code", "message", "data"}`, with the HTTP
status repeated in `code`. Validation texts are the document's, word for word."""

import json

from django.conf import settings
from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from jobs.sandbox import engine
from jobs.sandbox.models import SandboxTask

SLUG = "apixo"
# Assumption: the document only says to download results promptly; links live 24 h here.
RESULT_TTL = 24 * 3600
FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}  # jpeg: an alias
# Assumption (INDEX.md, APIXO): a tier is the output's long edge, the aspect ratio kept;
# the document does not say.
LONG_EDGE = {"2k": 2048, "4k": 4096, "8k": 8192}
# The document gives no request size (a request carries a URL): the default cap applies.
BODY_MAX_BYTES = engine.BODY_MAX_BYTES

# "Request validation" table of the document, word for word.
MISSING_INPUT = "The required parameter {{input}} is missing."
INVALID_MODE = "Invalid mode type. Supported: image-to-image"
MISSING_URLS = "The required parameter {{image_urls}} is missing."
URLS_NOT_ARRAY = "The parameter {{image_urls}} must be Array type."
URLS_NOT_ONE = "The parameter {{image_urls}} must contain exactly 1 image."
URL_NOT_STRING = "The parameter {{image_urls}} Array elements must be String type."
URL_EMPTY = "The parameter {{image_urls}} cannot contain empty string."
INVALID_RESOLUTION = "The parameter {{resolution}} must be either '2k', '4k' or '8k'."
INVALID_FORMAT = "The parameter {{output_format}} must be either 'jpg', 'png' or 'webp'."
# Not in the document's table; worded the same way.
INVALID_BODY = "The request body must be a JSON object."
NOT_JSON = "Content-Type must be application/json."
INVALID_REQUEST_TYPE = "Invalid request_type. Supported: async, callback"
MISSING_CALLBACK = "The required parameter {{callback_url}} is missing."
MISSING_TASK_ID = "The required parameter {{taskId}} is missing."
CALLBACK_REFUSED = (
    "The parameter {{callback_url}} must be an address under the portal's own /hooks/ "
    "(this sandbox calls back nowhere else)."
)

# HTTP statuses, with the "Meaning" column of the document's error table as the message.
STATUS_MESSAGES = {
    400: "Invalid request body",
    401: "Missing or invalid API key",
    402: "Insufficient balance or quota",
    403: "Key or route cannot access the model",
    404: "Task not found",
    411: "Content length required",  # not in the document (the sandbox's body cap)
    413: "Request body too large",  # likewise
    429: "Rate limit or concurrency limit reached",
    500: "Server or unmapped upstream error",
    502: "Upstream service error",
    503: "Service unavailable",  # not in the document; faults may ask for it
    504: "Upstream timeout",
}
FAIL_MESSAGES = {  # failMsg per documented failCode
    "ImageFormatIncorrect": "The upstream service rejected the input image format.",
    "SensitiveContent": "Input or generated content was rejected by safety checks.",
    "RateLimited": "Upstream rate limit was reached.",
    "Timeout": "Upstream service did not finish in time.",
    "Unknown error": "Unknown error.",
}
STATES = {  # task.phase() -> APIXO's state
    "queued": "pending",
    "processing": "processing",
    "done": "success",
    "failed": "failed",
    "canceled": "failed",  # APIXO has no cancel; never reached
}


def output_size(width: int, height: int, resolution: str) -> tuple[int, int]:
    edge = LONG_EDGE[resolution]
    if width >= height:
        return edge, max(1, round(height * edge / width))
    return max(1, round(width * edge / height)), edge


def envelope(code: int, message: str, data=None) -> JsonResponse:
    return JsonResponse({"code": code, "message": message, "data": data}, status=code)


def refuse(status: int, message: str = "") -> JsonResponse:
    return envelope(status, message or STATUS_MESSAGES.get(status, "Error"))


def gate(request, call: str) -> JsonResponse | None:
    """What every call goes through first: faults, then the key."""
    engine.be_slow(SLUG)
    injected = engine.injected_error(SLUG, call)
    if injected:
        status, retry_after = injected
        return engine.retry_after_headers(refuse(status), retry_after)
    if request.headers.get("Authorization") != f"Bearer {settings.SANDBOX_API_KEY}":
        return refuse(401)
    return None


def validate(body) -> tuple[str, dict]:
    """(error text, {}) or ("", cleaned input) for a submit body."""
    if not isinstance(body, dict):
        return INVALID_BODY, {}
    request_type = body.get("request_type", "async")
    if request_type not in ("async", "callback"):
        return INVALID_REQUEST_TYPE, {}
    # The real API wants a public https callback_url; this local sandbox takes http too,
    # but only to our own /hooks/.
    callback_url = body.get("callback_url")
    if request_type == "callback" and not (isinstance(callback_url, str) and callback_url):
        return MISSING_CALLBACK, {}
    if request_type == "callback" and not engine.is_our_hook(callback_url):
        return CALLBACK_REFUSED, {}
    given = body.get("input")
    if not isinstance(given, dict):
        return MISSING_INPUT, {}
    if given.get("mode", "image-to-image") != "image-to-image":
        return INVALID_MODE, {}
    if "image_urls" not in given:
        return MISSING_URLS, {}
    urls = given["image_urls"]
    if not isinstance(urls, list):
        return URLS_NOT_ARRAY, {}
    if len(urls) != 1:
        return URLS_NOT_ONE, {}
    if not isinstance(urls[0], str):
        return URL_NOT_STRING, {}
    if not urls[0].strip():
        return URL_EMPTY, {}
    resolution = given.get("resolution", "4k")
    resolution = resolution.lower() if isinstance(resolution, str) else resolution
    if resolution not in ("2k", "4k", "8k"):
        return INVALID_RESOLUTION, {}
    output_format = given.get("output_format", "jpg")
    output_format = output_format.lower() if isinstance(output_format, str) else output_format
    if output_format not in FORMATS:
        return INVALID_FORMAT, {}
    return "", {
        "image_url": urls[0],
        "resolution": resolution,
        "output_format": "jpg" if output_format == "jpeg" else output_format,
        "callback_url": callback_url if request_type == "callback" else "",
    }


@csrf_exempt
@require_POST
def generate(request):
    """POST generateTask/image-upscaler -> {"data": {"taskId"}}."""
    refused = gate(request, "submit")
    if refused:
        return refused
    # The document requires this header on submits.
    if request.content_type != "application/json":
        return refuse(400, NOT_JSON)
    try:
        raw = engine.read_body(request, BODY_MAX_BYTES)
    except engine.BodyRefused as refused:
        return refuse(refused.status)
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    problem, given = validate(body)
    if problem:
        return refuse(400, problem)
    params = {"resolution": given["resolution"], "output_format": given["output_format"]}
    fmt, hook = FORMATS[given["output_format"]], given["callback_url"]
    try:
        data = engine.fetch_input(given["image_url"])
        info = engine.decode_input(data)
    except engine.InputError as exc:
        # The real service takes the task and fails it upstream with this code.
        task = engine.create_task(
            SLUG, b"", webhook_url=hook, width=0, height=0, format=fmt, fail_msg=str(exc), **params
        )
        SandboxTask.objects.filter(pk=task.pk).update(failure_code="ImageFormatIncorrect")
    else:
        width, height = output_size(info.width, info.height, given["resolution"])
        task = engine.create_task(
            SLUG,
            data,
            webhook_url=hook,
            width=width,
            height=height,
            format=fmt,
            label=given["resolution"].upper(),
            **params,
        )
    # The callback body is the status answer; APIXO retries a delivery up to 3 times.
    engine.schedule_webhook(task, status_body, retries=3)
    return envelope(200, "success", {"taskId": task.public_id})


@csrf_exempt
@require_GET
def status(request):
    """GET statusTask/image-upscaler?taskId= -> state, and resultJson once done."""
    refused = gate(request, "poll")
    if refused:
        return refused
    task_id = request.GET.get("taskId", "")
    if not task_id:
        return refuse(400, MISSING_TASK_ID)
    task = SandboxTask.objects.filter(provider=SLUG, public_id=task_id).first()
    if task is None:
        return refuse(404)
    return JsonResponse(status_body(task))


def status_body(task: SandboxTask) -> dict:
    """The status envelope (also the callback payload), shaped as the document shows."""
    state = STATES[task.phase()]
    data = {"taskId": task.public_id, "state": state}
    if state == "success":
        link = engine.result_url(task, RESULT_TTL)
        data["resultJson"] = json.dumps({"resultUrls": [link]}, separators=(",", ":"))
    elif state == "failed":
        code = task.failure_code or "Unknown error"
        data["failCode"] = code
        data["failMsg"] = task.params.get("fail_msg") or FAIL_MESSAGES.get(code, "Unknown error.")
    data["createTime"] = engine.millis(task.created_at)
    if state in ("success", "failed"):
        data["completeTime"] = engine.millis(task.completes_at)
    if state == "success":
        data["costTime"] = data["completeTime"] - data["createTime"]
    return {"code": 200, "message": "success", "data": data}


urlpatterns = [
    path("generateTask/image-upscaler", generate, name="sandbox-apixo-generate"),
    path("statusTask/image-upscaler", status, name="sandbox-apixo-status"),
]
