"""What every sandbox shares: tasks that progress with time, faults, real output made
with Pillow, expiring result links, webhook delivery. Each provider module
(`jobs/sandbox/<slug>.py`) adds only its paths, auth, validation and wire format.

The sandboxes are reachable by anyone who can reach the portal, so they are fenced: the
network only through the one HTTP door (`jobs.http`) and only to the portal's own
PUBLIC_BASE_URL or its configured media bucket (inputs) or its /hooks/ (webhooks);
request bodies capped before they are read; every failed fetch worded the same.
"""

import asyncio
import io
import logging
import threading
import time
import uuid
import warnings

import httpx
from django.conf import settings
from django.core import signing
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import F
from django.http import HttpResponse
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from jobs import files, imaging
from jobs import http as door
from jobs.errors import ProviderError
from jobs.sandbox import stamp
from jobs.sandbox.models import SandboxFaults, SandboxTask

log = logging.getLogger(__name__)
FILE_SALT = "sandbox-result"
# What each sandbox calls itself on its output's label: the names the portal shows for
# these providers (the sandboxes import nothing of the adapters, so they say it here).
NAMES = {
    "pixazo": "Pixazo Crystal",
    "pixelcut": "Pixelcut",
    "fal": "fal.ai Crystal",
    "ximilar": "Ximilar",
    "apixo": "APIXO",
}
_pending_webhooks: set[threading.Timer] = set()

MB = 1024 * 1024
# Caps where a provider's document gives none (only Pixelcut's gives one, 25 MB): large
# enough for any request our adapters send (they send a link instead of a bigger inline
# image), small enough that a caller cannot make the web process hold much.
BODY_MAX_BYTES = 30 * MB  # a request body
INPUT_MAX_BYTES = 30 * MB  # an input image fetched by URL
INPUT_MAX_PIXELS = 100_000_000  # the emulators' own guard against decompression bombs
FETCH_DEADLINE = 20.0  # seconds to fetch an input, redirects included
WEBHOOK_DEADLINE = 30.0  # seconds for one delivery (APIXO wants an answer within 30 s)
WEBHOOK_ANSWER_MAX_BYTES = 64 * 1024  # what we read of the answer to a webhook
_READ_PIECE = 64 * 1024
# One text for every failed fetch, whatever happened (refused address, no connection,
# no answer, an error status, too big): an emulator that told "could not connect" from
# "answered 404" would be a port scanner for whoever calls it.
FETCH_FAILED = "the image could not be fetched from its URL"


class InputError(Exception):
    """The input could not be fetched or decoded (the provider module words the error)."""


class BodyRefused(Exception):
    """A request body refused before it was read: 413 (over the cap), 411 (no length,
    on a server that cannot tell us where the body ends) or 400 (a nonsense length).
    The provider module words the answer."""

    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


# --- faults ----------------------------------------------------------------------------
_faults_cache: dict[str, tuple[float, SandboxFaults]] = {}
FAULTS_TTL = 0.5  # seconds; a change made in another process shows after this at most


def faults(provider: str) -> SandboxFaults:
    """The provider's fault settings. Read on every emulated call, so briefly cached:
    under load the sandbox otherwise spends more time reading them than answering."""
    cached = _faults_cache.get(provider)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    found = SandboxFaults.objects.filter(provider=provider).first() or SandboxFaults(
        provider=provider
    )
    _faults_cache[provider] = (time.monotonic() + FAULTS_TTL, found)
    return found


def forget_faults() -> None:
    _faults_cache.clear()


def set_faults(provider: str, **values) -> SandboxFaults:
    """Switch faults on (tests, demos). Unnamed fields go back to their defaults."""
    SandboxFaults.objects.filter(provider=provider).delete()
    _faults_cache.pop(provider, None)
    return SandboxFaults.objects.create(provider=provider, **values)


def injected_error(provider: str, call: str) -> tuple[int, int] | None:
    """(status, retry_after) if a switched-on error fault applies to this call.
    Each call uses up one; the conditional UPDATE keeps concurrent requests honest."""
    fault = faults(provider)
    if fault.error_status and fault.error_on in ("any", call):
        used = SandboxFaults.objects.filter(
            provider=provider, error_count__gt=0, error_on=fault.error_on
        ).update(error_count=F("error_count") - 1)
        if used:
            return fault.error_status, fault.retry_after
    return None


def be_slow(provider: str) -> None:
    # The emulated provider is slow to answer; this sleeps in the sandbox's own request,
    # never in our worker.
    seconds = faults(provider).slow_seconds
    if seconds:
        time.sleep(seconds)


def retry_after_headers(response: HttpResponse, seconds: int) -> HttpResponse:
    response["Retry-After"] = str(seconds)
    return response


# --- tasks ------------------------------------------------------------------------------
def new_id() -> str:
    return str(uuid.uuid4())


# --- the fence: bodies in, fetches and webhooks out ----------------------------------
def read_body(request, cap: int = BODY_MAX_BYTES) -> bytes:
    """The request body, never more than `cap` bytes of it read: refused by its announced
    length before a byte is read, or after cap + 1 bytes when no length was announced.
    Raises BodyRefused. (Not `request.body`: Django would refuse anything over
    DATA_UPLOAD_MAX_MEMORY_SIZE, which is smaller than the bodies an API takes.)"""
    meta = request.META
    declared = meta.get("CONTENT_LENGTH")
    if declared:
        try:
            length = int(declared)
        except ValueError:
            raise BodyRefused(400) from None
        if length > cap:
            raise BodyRefused(413)
        return _read_at_most(request, cap)  # Django's stream stops at Content-Length
    if meta.get("wsgi.input_terminated"):
        # The server ends the stream with the body (gunicorn de-chunks a chunked body):
        # read it ourselves, since Django reads no body without a Content-Length.
        return _read_at_most(meta["wsgi.input"], cap)
    if meta.get("HTTP_TRANSFER_ENCODING"):
        # A body of unknown length on a server that cannot end it for us (Django's own
        # passes none of it on): say so, rather than take it as empty.
        raise BodyRefused(411)
    return b""


def _read_at_most(stream, cap: int) -> bytes:
    pieces, total = [], 0
    while total <= cap:
        piece = stream.read(min(_READ_PIECE, cap + 1 - total))
        if not piece:
            break
        pieces.append(piece)
        total += len(piece)
    if total > cap:
        raise BodyRefused(413)
    return b"".join(pieces)


def own_origin() -> door.Rules:
    """Where a sandbox may deliver webhooks (and, with `input_rules`, fetch inputs): the
    portal's own PUBLIC_BASE_URL (scheme, host and port), where our webhooks and signed
    input links live. Nothing else, not even another port of the same host."""
    return door.Rules(
        trusted_origins=frozenset({door.origin(settings.PUBLIC_BASE_URL)}), public=False
    )


def input_rules() -> door.Rules:
    """Where a sandbox may fetch an input: our own origin (the signed /inputs/ links) and,
    with media in a bucket, the bucket's configured origins, since the adapters then send
    presigned links straight to it (jobs.inbound.input_url). Each on its own scheme and
    port only; nothing else."""
    bucket = {door.origin(url) for url in files.bucket_origins()}
    return door.Rules(trusted_origins=own_origin().trusted_origins | bucket, public=False)


def is_our_hook(url) -> bool:
    """Whether `url` is under PUBLIC_BASE_URL/hooks/, the one place a sandbox delivers
    webhooks (anywhere else, a caller would be using us to POST for them)."""
    if not isinstance(url, str):
        return False
    try:
        target = httpx.URL(url)
        hooks = httpx.URL(f"{settings.PUBLIC_BASE_URL}/hooks/")
    except (httpx.InvalidURL, TypeError, ValueError):
        return False
    return (
        target.scheme in ("http", "https")
        and door.origin(target) == door.origin(hooks)
        and not target.userinfo
        and target.path.startswith(hooks.path)
        and ".." not in target.path.split("/")
    )


def _client() -> httpx.AsyncClient:
    # The emulator's own client, not jobs.http.client(): it plays another party, whose
    # requests are not the portal's. No proxy from the environment either, so the
    # connection goes to the address the door vetted.
    return httpx.AsyncClient(
        verify=door.tls_context(),  # a client per call, but the CA bundle loaded once
        timeout=httpx.Timeout(FETCH_DEADLINE),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": "UpscalerPortal-Sandbox/1.0"},
    )


def fetch_input(url: str, max_bytes: int = INPUT_MAX_BYTES) -> bytes:
    """Fetch an input image by URL, as the real provider would: through the door, from
    our own origin or our bucket only (redirects checked again), capped in size and
    time."""

    async def go():
        async with _client() as http:
            return await door.fetch(
                http, "GET", url, input_rules(), max_bytes=max_bytes, deadline=FETCH_DEADLINE
            )

    try:
        status, body = asyncio.run(go())
    except (ProviderError, httpx.HTTPError, httpx.InvalidURL, OSError, ValueError):
        raise InputError(FETCH_FAILED) from None
    if status != 200:
        raise InputError(FETCH_FAILED)
    return body


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) as the image's header states them, not a pixel decoded; None when
    Pillow finds no header it can read (the full decode then says what is wrong)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as img:
                return img.size
        except Exception:  # Pillow raises many kinds for what is not an image it reads
            return None


def decode_input(data: bytes, limit=None, max_pixels: int = INPUT_MAX_PIXELS) -> imaging.ImageInfo:
    """Decode an input image. `limit(width, height)`, the provider module's own check,
    sees the size from the header first and may raise its own refusal: an image over a
    provider's limits is refused before its pixels are decoded."""
    size = header_size(data)
    if size and limit:
        limit(*size)
    try:
        return imaging.inspect_result(data, max_pixels)
    except imaging.ImageRefused as refusal:
        raise InputError(refusal.message) from None


def create_task(
    provider: str, data: bytes, *, public_id: str | None = None, webhook_url: str = "", **params
) -> SandboxTask:
    """Store the decoded input and start the clock. `params` must hold the output
    `width`, `height` and `format` ("JPEG", "PNG" or "WEBP")."""
    fault = faults(provider)
    public_id = public_id or new_id()
    input_name = default_storage.save(f"sandbox/{provider}/in/{public_id}", ContentFile(data))
    task = SandboxTask.objects.create(
        provider=provider,
        public_id=public_id,
        latency=fault.effective_latency,
        params=params,
        input_name=input_name,
        failure_code=fault.task_failure,
        webhook_url=webhook_url,
    )
    return task


def ensure_output(task: SandboxTask) -> SandboxTask:
    """The real upscale, done once, the first time anyone needs the result."""
    if task.output_name:
        return task
    width, height = task.params["width"], task.params["height"]
    fmt = task.params.get("format", "PNG")
    with default_storage.open(task.input_name, "rb") as stream:
        data = upscale(stream, (width, height), fmt, task.provider, stamp_text(task))
    ext = imaging.ACCEPTED_FORMATS[fmt]
    name = default_storage.save(
        f"sandbox/{task.provider}/out/{task.public_id}.{ext}", ContentFile(data)
    )
    SandboxTask.objects.filter(pk=task.pk, output_name="").update(
        output_name=name, output_width=width, output_height=height
    )
    task.refresh_from_db()
    return task


def stamp_text(task: SandboxTask) -> str:
    """ "Sandbox · Ximilar 4x GAN": the provider's name and what its request asked for
    (`label`, given by the provider module at create_task)."""
    name = NAMES.get(task.provider, task.provider)
    return " ".join(filter(None, ["Sandbox ·", name, task.params.get("label", "")]))


def upscale(stream, size: tuple[int, int], fmt: str, provider: str, text: str) -> bytes:
    """The emulated provider's work: a Lanczos resize to `size`, its own slight look and
    the sandbox label (jobs/sandbox/stamp.py), encoded as `fmt`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        img = Image.open(stream)
        if img.mode not in ("RGB", "RGBA", "L", "LA"):
            has_alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
            img = img.convert("RGBA" if has_alpha else "RGB")
        big = img.resize(size, Image.Resampling.LANCZOS)
    return imaging.encode(stamp.finish(big, provider, text), fmt)


def output_bytes(task: SandboxTask) -> bytes:
    task = ensure_output(task)
    with default_storage.open(task.output_name, "rb") as stream:
        return stream.read()


def result_url(task: SandboxTask, ttl: int, base: str | None = None) -> str:
    """An expiring link to the result, like the providers' signed CDN links."""
    task = ensure_output(task)
    expires = time.time() + (-60 if faults(task.provider).expired_results else ttl)
    token = signing.dumps({"n": task.output_name, "e": int(expires)}, salt=FILE_SALT)
    base = base or settings.PUBLIC_BASE_URL
    return base + reverse("sandbox-file", args=[token])


def serve_file(request, token):
    """GET /sandbox/files/<token>/: the result, until its link expires."""
    try:
        claim = signing.loads(token, salt=FILE_SALT)
    except signing.BadSignature:
        return _denied("Invalid signature")
    if claim["e"] < time.time():
        return _denied("Request has expired")
    if not default_storage.exists(claim["n"]):
        return _denied("No such object")
    ext = claim["n"].rsplit(".", 1)[-1]
    content_type = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}[ext]
    with default_storage.open(claim["n"], "rb") as stream:
        return HttpResponse(stream.read(), content_type=content_type)


def _denied(message: str) -> HttpResponse:
    # What an expired signed link on a storage CDN answers.
    body = f"<Error><Code>AccessDenied</Code><Message>{message}</Message></Error>"
    return HttpResponse(body, status=403, content_type="application/xml")


# --- webhooks ---------------------------------------------------------------------------
def schedule_webhook(task: SandboxTask, payload, headers=None, *, retries=0) -> None:
    """Deliver `payload(task)` to the task's webhook URL when it completes, the way the
    fault settings say: once, twice, late, or never."""
    if not task.webhook_url:
        return
    fault = faults(task.provider)
    mode = fault.webhook
    if mode == SandboxFaults.Webhook.OFF:
        return
    delay = task.latency + (fault.late_seconds if mode == SandboxFaults.Webhook.LATE else 0)
    times = 2 if mode == SandboxFaults.Webhook.DUPLICATE else 1

    def deliver():
        try:
            fresh = SandboxTask.objects.get(pk=task.pk)
            body = payload(fresh)
            for _ in range(times):
                _post(fresh.webhook_url, body, headers or {}, retries)
        except Exception:
            log.exception("sandbox webhook for %s failed", task.public_id)
        finally:
            # This thread ends here: close its connection now, not after CONN_MAX_AGE.
            connection.close()

    def start():
        timer = threading.Timer(max(delay, 0.05), deliver)
        timer.daemon = True
        _pending_webhooks.add(timer)
        timer.start()

    transaction.on_commit(start)


def wait_for_webhooks(timeout: float = 15.0) -> None:
    """Let scheduled deliveries finish (tests do this before their database goes)."""
    deadline = time.monotonic() + timeout
    for timer in list(_pending_webhooks):
        timer.join(max(0.0, deadline - time.monotonic()))
        _pending_webhooks.discard(timer)


def _post(url: str, body: dict, headers: dict, retries: int) -> None:
    # Checked at submit already; checked again here, where the request is made.
    if not is_our_hook(url):
        log.warning("sandbox webhook not sent: its URL is not under PUBLIC_BASE_URL/hooks/")
        return
    for attempt in range(retries + 1):
        try:
            status, _answer = asyncio.run(_send_webhook(url, body, headers))
            if status < 300:
                return
        except (ProviderError, httpx.HTTPError, httpx.InvalidURL, OSError, TypeError, ValueError):
            pass  # a caller's odd webhook headers included: the delivery failed, that is all
        if attempt < retries:
            time.sleep(1.0)  # the emulated provider's own retry pause, in its own thread


async def _send_webhook(url: str, body: dict, headers: dict) -> tuple[int, bytes]:
    async with _client() as http:
        return await door.fetch(
            http,
            "POST",
            url,
            own_origin(),
            max_bytes=WEBHOOK_ANSWER_MAX_BYTES,
            deadline=WEBHOOK_DEADLINE,
            json=body,
            headers=headers,
        )


def image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size


def millis(dt) -> int:
    return int(dt.timestamp() * 1000)


def now():
    return timezone.now()
