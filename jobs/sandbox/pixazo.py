"""Sandbox for Pixazo's Crystal Upscaler (doc 000), mounted at /sandbox/pixazo/.

Paths, auth header, bodies and error texts are the documented ones. Where the doc is
silent (INDEX.md, "Pixazo") the sandbox follows the decisions taken there: predictions
are Replicate's (`philz1337x/crystal-upscaler`), the webhook body is that prediction,
and polling is Pixazo's generic `GET /v2/requests/status/{id}`.
"""

import base64
import json
import secrets
from datetime import UTC, timedelta

from django.conf import settings
from django.http import JsonResponse
from django.urls import path, re_path
from django.utils.crypto import constant_time_compare
from django.views.decorators.csrf import csrf_exempt

from jobs.sandbox import engine
from jobs.sandbox.models import SandboxTask

SLUG = "pixazo"
MODEL = "philz1337x/crystal-upscaler"
# A published version of the model whose output is a list of URLs (Replicate's API tab).
MODEL_VERSION = "7fd109216ec669863b67570b8db518931bcba4db2668543b1d4a0acc73a42d24"
SCALES = (2, 4, 6, 8)
# The doc marks scale_factor optional without a default; the Replicate model's input
# schema defaults it to 2 (replicate.com/philz1337x/crystal-upscaler, "API" tab).
DEFAULT_SCALE = 2
# Assumption: the model's output_format defaults to "png" on Replicate and Pixazo's doc
# offers no format field, so results are PNG.
OUTPUT_FORMAT = "PNG"
# Assumption: the doc does not say how long result links live; Replicate's delivery links
# are short-lived, so one hour.
RESULT_TTL = 3600
# Valid webhook_events_filter values as the doc lists them.
EVENT_FILTERS = {"*", "completed"}
# The doc gives no limit for a request (it carries a URL, not the image): the sandboxes'
# default cap applies (engine.BODY_MAX_BYTES).
WEBHOOK_REFUSED = (
    "Invalid request parameters: this sandbox delivers webhooks only to the portal's own "
    "/hooks/ address"
)

# The doc's own texts (its status table). 402 is not in the table (INDEX.md: "no
# credits"); its text is an assumption.
ERROR_TEXTS = {
    400: "Invalid request parameters",
    401: "Invalid or missing authentication",
    402: "Insufficient credits",
    403: "Access denied for this operation",
    404: "Endpoint not found",
    429: "Rate limit exceeded, please retry later",
    500: "An unexpected error occurred, please try again later",
    # Not in the doc's table (the sandbox's body cap): worded like the rest.
    411: "Content length required",
    413: "Request body too large",
}

# task.phase() -> the status endpoint's words / Replicate's words (submit, webhook).
STATUS_WORDS = {
    "queued": "QUEUED",
    "processing": "PROCESSING",
    "done": "COMPLETED",
    "failed": "FAILED",
    "canceled": "FAILED",  # the status endpoint has no canceled state
}
PREDICTION_WORDS = {
    "queued": "starting",
    "processing": "processing",
    "done": "succeeded",
    "failed": "failed",
    "canceled": "canceled",
}


# --- views ------------------------------------------------------------------------------
@csrf_exempt
def generate(request):
    """POST upscaler/v1/crystal-upscaler/generate: start a prediction."""
    if request.method != "POST":
        return not_found(request)
    # The gateway rate-limits before anything reaches the model.
    if refused := _injected("submit"):
        return refused
    if not _authorized(request):
        return _error(401)
    try:
        raw = engine.read_body(request)
    except engine.BodyRefused as refused:
        return _error(refused.status)
    body = _valid_body(raw)
    if body is None:
        return _error(400)
    if "webhook" in body and not engine.is_our_hook(body["webhook"]):
        return _error(400, WEBHOOK_REFUSED)
    try:
        # Fetched at submit, so a link that does not work is refused at once.
        data = engine.fetch_input(body["image"])
        info = engine.decode_input(data)
    except engine.InputError as exc:
        return _error(400, f"Invalid image: {exc}")
    scale = body["scale_factor"]
    task = engine.create_task(
        SLUG,
        data,
        public_id=_prediction_id(),
        # Both valid filters include completion, the one event emulated.
        webhook_url=body.get("webhook", ""),
        width=info.width * scale,
        height=info.height * scale,
        format=OUTPUT_FORMAT,
        input={"image": body["image"], "scale_factor": scale},
        label=f"{scale}x",
    )
    # With ["*"] Replicate would also send start/output/log events; only completion is
    # emulated. No Standard Webhooks signature: the portal authenticates by its URL token.
    engine.schedule_webhook(task, prediction, {"webhook-id": f"msg_{task.public_id}"}, retries=2)
    # A slow answer comes after the prediction exists: that is what makes a timed-out
    # submit "outcome unknown" (the task may run and be charged).
    engine.be_slow(SLUG)
    return JsonResponse(
        {
            "success": True,
            "id": task.public_id,
            "model": MODEL,
            "status": "starting",  # a new prediction always starts so, however fast
            "input": task.params["input"],
            "created_at": _iso(task.created_at),
        }
    )


@csrf_exempt
def status(request, request_id):
    """GET v2/requests/status/<id>: Pixazo's generic status endpoint (INDEX.md)."""
    if request.method != "GET":
        return not_found(request)
    engine.be_slow(SLUG)
    if refused := _injected("poll"):
        return refused
    if not _authorized(request):
        return _error(401)
    task = SandboxTask.objects.filter(provider=SLUG, public_id=request_id).first()
    if task is None:
        return _error(404)
    phase = task.phase()
    answer = {
        "request_id": task.public_id,
        "status": STATUS_WORDS[phase],
        "output": None,
        "error": None,
        "created_at": _iso(task.created_at),
    }
    if phase == "done":
        # A fresh link on every call, so a link that expired in transit can be replaced.
        answer["output"] = {"media_url": [engine.result_url(task, RESULT_TTL)]}
    elif phase in ("failed", "canceled"):
        answer["status"], answer["error"] = _failure(task)
    return JsonResponse(answer)


@csrf_exempt
def not_found(request, *args, **kwargs):
    return _error(404)


urlpatterns = [
    path("upscaler/v1/crystal-upscaler/generate", generate, name="sandbox-pixazo-generate"),
    path("v2/requests/status/<str:request_id>", status, name="sandbox-pixazo-status"),
    re_path(r"^.*$", not_found),
]


# --- the prediction (submit answer and webhook body) --------------------------------------
def prediction(task: SandboxTask) -> dict:
    """The Replicate prediction as it stands now; the webhook body (INDEX.md). `output` is
    a list of URLs, as the current model version returns."""
    phase = task.phase()
    done = phase in ("done", "failed", "canceled")
    return {
        "id": task.public_id,
        "model": MODEL,
        "version": MODEL_VERSION,
        "input": task.params["input"],
        "logs": "",
        "output": [engine.result_url(task, RESULT_TTL)] if phase == "done" else None,
        "data_removed": False,
        "error": _failure(task)[1] if phase in ("failed", "canceled") else None,
        "status": PREDICTION_WORDS[phase],
        "created_at": _iso(task.created_at),
        "started_at": _iso(task.created_at + timedelta(seconds=task.latency * 0.2)),
        "completed_at": _iso(task.completes_at) if done else None,
        "metrics": {"predict_time": round(task.latency * 0.8, 3)} if done else {},
    }


# --- helpers ------------------------------------------------------------------------------
def _error(status: int, text: str = "") -> JsonResponse:
    text = text or ERROR_TEXTS.get(status) or ERROR_TEXTS[500 if status >= 500 else 400]
    return JsonResponse({"error": text}, status=status)


def _injected(call: str):
    fault = engine.injected_error(SLUG, call)
    if fault is None:
        return None
    status, retry_after = fault
    return engine.retry_after_headers(_error(status), retry_after)


def _authorized(request) -> bool:
    key = request.headers.get("Ocp-Apim-Subscription-Key", "")
    return constant_time_compare(key, settings.SANDBOX_API_KEY)


def _valid_body(raw: bytes) -> dict | None:
    """The request with defaults filled in, or None: the doc has one text for every
    invalid parameter or missing field."""
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        return None
    if not isinstance(body, dict) or not _is_url(body.get("image")):
        return None
    scale = body.setdefault("scale_factor", DEFAULT_SCALE)
    if type(scale) is not int or scale not in SCALES:  # not bool, not 4.0, not "4"
        return None
    if "webhook" in body and not _is_url(body["webhook"]):
        return None
    events = body.get("webhook_events_filter", ["*"])
    if not isinstance(events, list) or not events or not set(events) <= EVENT_FILTERS:
        return None
    return body


def _is_url(value) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://"))


def _failure(task: SandboxTask) -> tuple[str, str]:
    """(status word, error text) for a failed task. The fault's failure code FAILED or
    ERROR picks the status; any other text is the model's error message."""
    if task.canceled_at:
        return "FAILED", "Prediction was canceled."
    code = task.failure_code.upper()
    if code in ("FAILED", "ERROR"):
        return code, "The model could not process this image."
    return "FAILED", task.failure_code


def _prediction_id() -> str:
    # Replicate's ids: 26 lowercase base32 characters.
    return base64.b32encode(secrets.token_bytes(20)).decode().lower()[:26]


def _iso(moment) -> str:
    # The doc's form: 2025-10-22T08:00:00.000Z
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
