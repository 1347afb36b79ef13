"""Sandbox for Pixelcut Upscale (doc 001): `POST /v1/upscale`, answered in the same call.

Like the real API it takes multipart (`image` file, `scale`) or JSON (`image_url`,
`scale`), the file winning when both are given; checks `X-API-KEY`; validates the
documented limits with Pixelcut's `{"error", "error_code"}` bodies; answers
`{"result_url"}` (a link valid one hour) or, with `Accept: image/*`, the image bytes.
Output is the input times the scale, JPEG unless the input has alpha, then PNG.

Our decisions where the document is silent:
- `scale` is required (missing_parameter when absent); in JSON it must be the number 2
  or 4, in a form the text "2" or "4".
- an image under 64x64 answers invalid_parameter (no documented code fits better);
- an `image_url` that cannot be fetched answers invalid_parameter, with one text
  whatever went wrong (the sandbox fetches only from the portal's own address);
- a body over the 25 MB file (plus room for the multipart around it) answers 413
  file_size_too_large before it is read;
- 500 and 503 answer `{"error": "Internal service error"}` with no error_code (the
  document gives the text only).
"""

import collections
import io
import json
import math
import threading
import time

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.http import HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParser, MultiPartParserError
from django.urls import path
from django.utils.crypto import constant_time_compare
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from PIL import Image

from jobs.sandbox import engine

SLUG = "pixelcut"
RESULT_TTL = 3600  # "valid for 1 hour"
MAX_BYTES = 25 * 1024 * 1024  # "Max size: 25MB"
# A multipart body is the file and a little more (boundaries, part headers, `scale`).
BODY_MAX_BYTES = MAX_BYTES + 1024 * 1024
MIN_SIDE = 64
MAX_SIDE = {2: 3000, 4: 1500}
MAX_OUTPUT_SIDE = 6000

# "About 5 requests a second per account" (INDEX.md). A sliding window per API key, kept
# in this process only: with several web processes each enforces it on its own share,
# which is close enough for an emulator. Tests may freeze `clock` or call `forget()`.
RATE_LIMIT = 5
RATE_WINDOW = 1.0  # seconds
clock = time.monotonic
_seen: dict[str, collections.deque] = collections.defaultdict(collections.deque)
_seen_lock = threading.Lock()

# Texts for the documented error codes (the document words only file_size_too_large).
TEXTS = {
    "invalid_request_body": "Invalid request body",
    "missing_parameter": "Missing required parameter",
    "invalid_parameter": "Invalid parameter",
    "unsupported_content_type": "Unsupported content type",
    "malformed_image": "Image could not be decoded",
    "unsupported_image_format": "Unsupported image format",
    "file_size_too_large": "File size too large",
    "resolution_too_high": "Image resolution too high",
    "unknown_foreground": "Could not detect a foreground subject",
}
# The documented bodies of the other statuses (faults use them too).
STATUS_BODIES = {
    400: {"error": TEXTS["invalid_request_body"], "error_code": "invalid_request_body"},
    401: {"error": "API Token not found", "error_code": "invalid_auth_token"},
    403: {"error": "Insufficient credits available", "error_code": "insufficient_api_credits"},
    429: {"error": "Too many requests", "error_code": "rate_limit_exceeded"},
}
SERVER_ERROR = {"error": "Internal service error"}


class Refused(Exception):
    """A 400 answer: Pixelcut's error code, with an optional detail after the text."""

    def __init__(self, code: str, detail: str = ""):
        super().__init__(code)
        self.code = code
        self.detail = detail


def error(code: str, detail: str = "") -> JsonResponse:
    text = TEXTS.get(code, code) + (f": {detail}" if detail else "")
    return JsonResponse({"error": text, "error_code": code}, status=400)


def status_answer(status: int) -> JsonResponse:
    return JsonResponse(STATUS_BODIES.get(status, SERVER_ERROR), status=status)


def body_refused(status: int) -> JsonResponse:
    """A body refused unread, in Pixelcut's shape: too large is the documented
    file_size_too_large (with 413, as it was never read); otherwise invalid_request_body."""
    code = "file_size_too_large" if status == 413 else "invalid_request_body"
    return JsonResponse({"error": TEXTS[code], "error_code": code}, status=status)


def forget() -> None:
    """Empty the rate limiter's memory (tests)."""
    with _seen_lock:
        _seen.clear()


def too_many(key: str) -> int:
    """Seconds to wait when `key` is over the limit, else 0 (and the call is counted)."""
    now = clock()
    with _seen_lock:
        calls = _seen[key]
        while calls and calls[0] <= now - RATE_WINDOW:
            calls.popleft()
        if len(calls) >= RATE_LIMIT:
            return max(1, math.ceil(calls[0] + RATE_WINDOW - now))
        calls.append(now)
    return 0


# --- the request ------------------------------------------------------------------------
def read_request(request, raw: bytes) -> tuple[bytes, int]:
    """(image bytes, scale) from a multipart or JSON body (`raw`, read already), or raise
    Refused."""
    content_type = request.content_type or ""
    if content_type == "multipart/form-data":
        fields, upload = parse_form(request, raw)
        image_url = fields.get("image_url", "")
        scale = parse_scale(fields.get("scale"), text=True)
    elif content_type == "application/json":
        try:
            fields = json.loads(raw or b"")
        except ValueError:
            raise Refused("invalid_request_body") from None
        if not isinstance(fields, dict):
            raise Refused("invalid_request_body")
        upload, image_url = None, fields.get("image_url")
        scale = parse_scale(fields.get("scale"), text=False)
    else:
        raise Refused("unsupported_content_type")
    if upload is not None:  # the file wins over image_url
        if upload.size > MAX_BYTES:
            raise Refused("file_size_too_large")
        return upload.read(), scale
    if not image_url:
        raise Refused("missing_parameter", "image or image_url")
    if not isinstance(image_url, str) or not image_url.startswith(("http://", "https://")):
        raise Refused("invalid_parameter", "image_url")
    try:
        # Over 25 MB is a failed fetch too: one text for every way a fetch fails.
        data = engine.fetch_input(image_url, max_bytes=MAX_BYTES)
    except engine.InputError as exc:
        raise Refused("invalid_parameter", f"image_url ({exc})") from None
    return data, scale


def parse_form(request, raw: bytes):
    """(fields, the `image` file or None) of a multipart body read into memory already
    (capped), parsed as Django would parse it from the connection."""
    meta = {**request.META, "CONTENT_LENGTH": str(len(raw))}
    try:
        parser = MultiPartParser(meta, io.BytesIO(raw), request.upload_handlers, request.encoding)
        fields, files = parser.parse()
    except (MultiPartParserError, SuspiciousOperation):  # too many fields, and the like
        raise Refused("invalid_request_body") from None
    return fields, files.get("image")


def parse_scale(raw, *, text: bool) -> int:
    if raw is None or raw == "":
        raise Refused("missing_parameter", "scale")
    allowed = {"2": 2, "4": 4} if text else {2: 2, 4: 4}
    if isinstance(raw, bool) or raw not in allowed:  # True == 1: not a number here
        raise Refused("invalid_parameter", "scale must be 2 or 4")
    return allowed[raw]


def decode(data: bytes, scale: int):
    """The image's size and nature; its documented limits judged from the header, before
    a pixel is decoded."""
    try:
        return engine.decode_input(data, limit=lambda w, h: check_size(w, h, scale))
    except engine.InputError:
        # A readable image of a kind we do not take, or no image at all?
        try:
            with Image.open(io.BytesIO(data)) as img:
                readable = bool(img.format)
        except Exception:
            readable = False
        raise Refused("unsupported_image_format" if readable else "malformed_image") from None


def check_size(width: int, height: int, scale: int) -> None:
    if width < MIN_SIDE or height < MIN_SIDE:
        raise Refused("invalid_parameter", f"image must be at least {MIN_SIDE}x{MIN_SIDE}px")
    side = MAX_SIDE[scale]
    if width > side or height > side:
        raise Refused("resolution_too_high", f"at most {side}x{side}px at {scale}x")
    if max(width, height) * scale > MAX_OUTPUT_SIDE:
        raise Refused("resolution_too_high", f"output at most {MAX_OUTPUT_SIDE}px")


# --- the view ------------------------------------------------------------------------------
@csrf_exempt
@require_POST
def upscale(request):
    """POST /v1/upscale"""
    engine.be_slow(SLUG)
    injected = engine.injected_error(SLUG, "submit")
    if injected:
        status, retry_after = injected
        return engine.retry_after_headers(status_answer(status), retry_after)
    key = request.headers.get("X-API-KEY", "")
    if not constant_time_compare(key, settings.SANDBOX_API_KEY):
        return status_answer(401)
    wait = too_many(key)
    if wait:
        # The document promises no Retry-After; we send one as a courtesy.
        return engine.retry_after_headers(status_answer(429), wait)
    try:
        raw = engine.read_body(request, BODY_MAX_BYTES)
    except engine.BodyRefused as refused:
        return body_refused(refused.status)
    try:
        data, scale = read_request(request, raw)
        info = decode(data, scale)
    except Refused as refused:
        return error(refused.code, refused.detail)

    fmt = "PNG" if info.has_alpha else "JPEG"
    task = engine.create_task(
        SLUG,
        data,
        width=info.width * scale,
        height=info.height * scale,
        format=fmt,
        label=f"{scale}x",
    )
    # Synchronous: the answer comes when the work is done, after the task's latency.
    if task.latency:
        time.sleep(task.latency)
    if task.phase() == "failed":
        return error(task.failure_code)
    if request.headers.get("Accept", "").startswith("image/"):
        content_type = "image/png" if fmt == "PNG" else "image/jpeg"
        return HttpResponse(engine.output_bytes(task), content_type=content_type)
    # The link is built on the host the caller reached us by, so it is served by us.
    base = request.build_absolute_uri("/").rstrip("/")
    return JsonResponse({"result_url": engine.result_url(task, RESULT_TTL, base=base)})


urlpatterns = [path("v1/upscale", upscale, name="sandbox-pixelcut-upscale")]
