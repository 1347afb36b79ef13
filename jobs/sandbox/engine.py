"""What every sandbox shares: tasks that progress with time, faults, real output made
with Pillow, expiring result links, webhook delivery. Each provider module
(`jobs/sandbox/<slug>.py`) adds only its paths, auth, validation and wire format."""

import io
import logging
import threading
import time
import uuid

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

from jobs import imaging
from jobs.sandbox.models import SandboxFaults, SandboxTask

log = logging.getLogger(__name__)
FILE_SALT = "sandbox-result"
_pending_webhooks: set[threading.Timer] = set()


class InputError(Exception):
    """The input could not be fetched or decoded (the provider module words the error)."""


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


def fetch_input(url: str) -> bytes:
    """Fetch an input image by URL, as the real provider would."""
    try:
        response = httpx.get(url, timeout=20, follow_redirects=True)
    except httpx.HTTPError as exc:
        raise InputError(f"could not fetch the image: {exc.__class__.__name__}") from None
    if response.status_code != 200:
        raise InputError(f"fetching the image answered {response.status_code}")
    return response.content


def decode_input(data: bytes) -> imaging.ImageInfo:
    try:
        return imaging.inspect_result(data, 100_000_000)
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
        data, fmt = imaging.resize(stream, (width, height), fmt)
    ext = imaging.ACCEPTED_FORMATS[fmt]
    name = default_storage.save(
        f"sandbox/{task.provider}/out/{task.public_id}.{ext}", ContentFile(data)
    )
    SandboxTask.objects.filter(pk=task.pk, output_name="").update(
        output_name=name, output_width=width, output_height=height
    )
    task.refresh_from_db()
    return task


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
    for attempt in range(retries + 1):
        try:
            response = httpx.post(url, json=body, headers=headers, timeout=30)
            if response.status_code < 300:
                return
        except httpx.HTTPError:
            pass
        if attempt < retries:
            time.sleep(1.0)  # the emulated provider's own retry pause, in its own thread


def image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size


def millis(dt) -> int:
    return int(dt.timestamp() * 1000)


def now():
    return timezone.now()
