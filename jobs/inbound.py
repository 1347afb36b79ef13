"""What providers call on us: webhooks, and the signed links to our copy of an input."""

import hashlib

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.http import FileResponse, Http404, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from jobs import lifecycle, tasks, tracker
from jobs.imaging import CONTENT_TYPES
from jobs.models import Job, WebhookDelivery
from jobs.providers import get_provider

INPUT_SALT = "jobs.input-url"
MAX_WEBHOOK_BYTES = 1024 * 1024


# --- signed input links ------------------------------------------------------------------
def input_url(job: Job) -> str:
    """A link to our copy of the input that a provider can fetch until it expires."""
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
@csrf_exempt
@require_POST
def webhook(request, provider, pk, token):
    """/hooks/<provider>/<job>/<token>/: authenticated by the per-job secret in the URL.

    A webhook is only a hint: we confirm with the provider (a poll, at once) before
    acting, so a forged, stale, duplicate or out-of-order delivery can change nothing."""
    job = Job.objects.filter(pk=pk, provider=provider).first()
    if job is None or not constant_time_compare(token, job.webhook_token):
        raise Http404("No such hook")
    body = request.body[:MAX_WEBHOOK_BYTES]
    hint = get_provider(provider).webhook_hint(body)[:200]
    try:
        with transaction.atomic():
            WebhookDelivery.objects.create(
                job=job, digest=hashlib.sha256(body).hexdigest(), hint=hint
            )
    except IntegrityError:
        return JsonResponse({"ok": True, "duplicate": True})
    name = job.provider_obj.name
    with transaction.atomic():
        # The conditional UPDATE holds the row until the note is written, so the timeline
        # never shows the hint after the job has already moved on.
        running = Job.objects.filter(pk=job.pk, state=Job.State.RUNNING).update(
            next_poll_at=timezone.now()
        )
        if running:
            said = f": {hint}" if hint else ""
            lifecycle.note(
                job.pk, Job.State.RUNNING, f"Webhook from {name}{said}. Confirming with {name}."
            )
            # The job is due now: a live tracker polls it within a second. Without one, a
            # task confirms it (under a burst of webhooks that task queue is the
            # bottleneck, which is why the tracker goes first).
            if not tracker.is_alive():
                tasks.enqueue_poll(job.pk)
    return JsonResponse({"ok": True})
