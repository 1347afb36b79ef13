"""What providers call on us: webhooks, and the signed links to our copy of an input."""

import hashlib
import json

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.http import FileResponse, Http404, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from jobs import files, lifecycle, tasks, tracker
from jobs.imaging import CONTENT_TYPES
from jobs.models import Job, WebhookDelivery
from jobs.providers import get_provider
from jobs.scrub import scrub
from upscaler_site.storage import MAX_EXPIRE

INPUT_SALT = "jobs.input-url"


# --- signed input links ------------------------------------------------------------------
def input_url(job: Job) -> str:
    """A link to our copy of the input that a provider can fetch until it expires.

    With media in a bucket, a presigned link straight to the object: the provider
    fetches from the bucket and the web process is not in the data path. It lives
    INPUT_URL_TTL, as the signed link does (a queued provider may fetch late), but unlike
    ours it cannot die early when the job ends."""
    if files.in_bucket():
        return files.presigned_url(
            job.input_file.name,
            expire=min(settings.INPUT_URL_TTL, MAX_EXPIRE),
            content_type=CONTENT_TYPES[job.input_format],
        )
    token = signing.dumps({"j": job.pk, "p": job.provider}, salt=INPUT_SALT, compress=True)
    return settings.PUBLIC_BASE_URL + reverse("job-input", args=[token])


@require_GET
def serve_input(request, token):
    """Refuses expired, altered or foreign tokens, and jobs no longer in progress."""
    try:
        claim = signing.loads(token, salt=INPUT_SALT, max_age=settings.INPUT_URL_TTL)
    except signing.BadSignature:  # includes SignatureExpired
        raise Http404("No such input") from None
    job = Job.objects.filter(pk=claim.get("j"), provider=claim.get("p")).first()
    if job is None or job.state not in (Job.State.SUBMITTING, Job.State.RUNNING):
        raise Http404("No such input")
    return FileResponse(job.input_file.open("rb"), content_type=CONTENT_TYPES[job.input_format])


# --- webhooks ----------------------------------------------------------------------------
MAX_WEBHOOK_BYTES = 1024 * 1024  # the providers' bodies are a few KB
MAX_DELIVERIES_PER_JOB = 20  # distinct bodies recorded per job; more change nothing


def read_capped(request, limit: int) -> bytes | None:
    """The request body, or None when it is larger than `limit`: refused by its declared
    length before anything is read, and never read past `limit` when undeclared."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if declared > limit:
        return None
    body = request.read(limit + 1)
    return None if len(body) > limit else body


def parse_object(body: bytes) -> dict | None:
    """A JSON object, or None for anything else (not JSON, not an object, nested deeper
    than the parser goes)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return data if isinstance(data, dict) else None


def _refuse(status: int, message: str) -> JsonResponse:
    return JsonResponse({"ok": False, "error": message}, status=status)


@csrf_exempt
@require_POST
def webhook(request, provider, pk, token):
    """/hooks/<provider>/<job>/<token>/: authenticated by the per-job secret in the URL.

    A webhook is only a hint: we confirm with the provider (a poll, at once) before
    acting, so a forged, stale, duplicate or out-of-order delivery can change nothing."""
    job = Job.objects.filter(pk=pk, provider=provider).first()
    if job is None or not constant_time_compare(token, job.webhook_token):
        raise Http404("No such hook")
    body = read_capped(request, MAX_WEBHOOK_BYTES)
    if body is None:
        return _refuse(413, "The body is larger than a webhook can be.")
    data = parse_object(body)
    if data is None:
        return _refuse(400, "The body must be a JSON object.")
    hint = scrub(get_provider(provider).webhook_hint(data))[:200]
    digest = hashlib.sha256(body).hexdigest()
    with transaction.atomic():
        # The job's row lock makes the count and the insert one step: the cap holds
        # under concurrent deliveries.
        Job.objects.select_for_update().filter(pk=job.pk).first()
        seen = list(job.webhooks.order_by("-pk").values_list("digest", "hint")[:1])
        if job.webhooks.filter(digest=digest).exists():
            return JsonResponse({"ok": True, "duplicate": True})
        if job.webhooks.count() >= MAX_DELIVERIES_PER_JOB:
            return JsonResponse({"ok": True, "ignored": "too many deliveries for this job"})
        try:
            with transaction.atomic():
                WebhookDelivery.objects.create(job=job, digest=digest, hint=hint)
        except IntegrityError:  # the unique constraint is the last word on duplicates
            return JsonResponse({"ok": True, "duplicate": True})
        # The conditional UPDATE holds the row until the note is written, so the timeline
        # never shows the hint after the job has already moved on.
        running = Job.objects.filter(pk=job.pk, state=Job.State.RUNNING).update(
            next_poll_at=timezone.now()
        )
        # Deliveries that say the same thing collapse into the note already there.
        if running and not (seen and seen[0][1] == hint):
            name = job.provider_obj.name
            said = f": {hint}" if hint else ""
            lifecycle.note(
                job.pk, Job.State.RUNNING, f"Webhook from {name}{said}. Confirming with {name}."
            )
        # The job is due now: a live tracker polls it within a second. Without one, a
        # task confirms it (under a burst of webhooks that task queue is the
        # bottleneck, which is why the tracker goes first).
        if running and not tracker.is_alive():
            tasks.enqueue_poll(job.pk)
    return JsonResponse({"ok": True})
