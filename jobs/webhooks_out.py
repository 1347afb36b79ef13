"""Outbound webhooks: a signed event to the URL an API caller named, when its job or its
whole batch has ended (Standard Webhooks, https://www.standardwebhooks.com).

- Events are rows (`EventDelivery`) written in the transaction that ends the job
  (`job_ended`, called by `jobs.lifecycle.move`). Their `message_id` (the `webhook-id`
  header) is derived from (job, event type) or (batch, "batch.ended") and unique, so a
  retried step or a second finisher of the same batch cannot make a second event.
- Each attempt is claimed with a conditional UPDATE that pushes `next_attempt_at` ahead
  by a lease, so two workers never send the same attempt; a worker that dies mid-send
  leaves a delivery that is due again once the lease is over.
- Sending goes through the one HTTP door (`jobs.http`) with `callback_rules()`: public
  https addresses only (loopback too while the sandboxes are on), the connection pinned
  to the vetted address, no redirects followed, a short deadline, the answer ignored but
  for its status. A 2xx is delivered; anything else is tried again later with backoff
  (the minute's sweep calls `deliver_due`: no worker waits out a delay), up to a day; an
  address the door refuses is given up at once, with its reason.
- The body is signed with the token's secret (`jobs.api.tokens.webhook_secret`), which
  is derived when needed: never stored, logged or put in the payload.
"""

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

import httpx
from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from billing import money
from jobs import http as door
from jobs.errors import ProviderError
from jobs.models import ApiToken, EventDelivery, Job
from jobs.scrub import scrub
from upscaler_site.env import derived_secret

log = logging.getLogger(__name__)

# Seconds before the 2nd, 3rd... attempt; then every hour, until GIVE_UP_AFTER.
SCHEDULE = (5, 30, 120, 600, 1800)
HOURLY = 3600
GIVE_UP_AFTER = timedelta(hours=24)
DEADLINE = 10.0  # seconds for one attempt, connection to answer
CLAIM_SECONDS = 60  # an attempt's lease: well over DEADLINE
ANSWER_MAX_BYTES = 4096  # what we read of a receiver's answer (and then ignore)
DUE_BATCH = 50  # deliveries one sweep sends
CONCURRENCY = 10
ERROR_LENGTH = EventDelivery._meta.get_field("last_error").max_length


# --- events ---------------------------------------------------------------------------
def message_id(key: str) -> str:
    """The webhook-id of an event: the same for every attempt (receivers de-duplicate on
    it), derived from what the event is about, and different on every install."""
    return "msg_" + derived_secret(settings.SECRET_KEY, f"webhook-id:{key}")[:32]


def job_ended(job_id: int) -> None:
    """Inside the transaction that moved the job to a final state: its event row, if its
    creator named a webhook URL. Queues the delivery once committed. A failure here is
    logged and rolled back to a savepoint: it never undoes the job's own step."""
    try:
        with transaction.atomic():
            _job_ended(job_id)
    except Exception:
        log.exception("the webhook event of job %s could not be recorded", job_id)


def _job_ended(job_id: int) -> None:
    job = (
        Job.objects.filter(pk=job_id, api_token__isnull=False)
        .exclude(webhook_url="")
        .select_related("price_book")
        .first()
    )
    if job is None:
        return
    event_type = f"job.{job.state}"
    _record(job, event_type, f"job:{job.pk}:{event_type}", job_payload(job, event_type))
    _record_batch_if_ended(job)
    transaction.on_commit(partial(after_commit, job.pk), robust=True)


def after_commit(job_id: int) -> None:
    """Once the job's end is committed: the batch's event, if this was its last job (seen
    here too: two jobs ending at once in two transactions may each miss the other), then
    one task for whatever of the job and its batch is due."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return
    _record_batch_if_ended(job)
    due = list(
        _due()
        .filter(Q(job_id=job_id) | Q(batch=job.batch, job__isnull=True))
        .values_list("pk", flat=True)
    )
    if due:
        from jobs import tasks

        tasks.send("jobs.tasks.deliver_webhooks", *due, queue="house")


def _record(job: Job, event_type: str, key: str, payload: dict, *, batch=None) -> None:
    # ON CONFLICT DO NOTHING on the unique message_id: a second call is a no-op, and on
    # PostgreSQL it does not break the surrounding transaction as an IntegrityError would.
    EventDelivery.objects.bulk_create(
        [
            EventDelivery(
                job=None if batch else job,
                batch=batch,
                token_id=job.api_token_id,
                url=job.webhook_url,
                event_type=event_type,
                message_id=message_id(key),
                payload=payload,
                next_attempt_at=timezone.now(),
            )
        ],
        ignore_conflicts=True,
    )


def _record_batch_if_ended(job: Job) -> None:
    jobs = Job.objects.filter(batch=job.batch)
    if jobs.exclude(state__in=Job.FINAL_STATES).exists():
        return
    key = f"batch:{job.batch}:batch.ended"
    if EventDelivery.objects.filter(message_id=message_id(key)).exists():
        return
    _record(job, "batch.ended", key, batch_payload(job.batch), batch=job.batch)


def shown_url(url: str) -> str:
    """Host and path of a receiver's URL, for pages and logs: its query may hold the
    receiver's own secret."""
    try:
        target = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "(not a valid URL)"
    port = f":{target.port}" if target.port else ""
    return f"{target.host}{port}{target.path}"


def _result_url(job_id: int) -> str:
    return f"{settings.PUBLIC_BASE_URL}/api/v1/jobs/{job_id}/result"


def job_payload(job: Job, event_type: str) -> dict:
    """What a receiver learns of a job: no secret, and only scrubbed provider text."""
    price = job.price
    succeeded = job.state == Job.State.SUCCEEDED
    failed = job.state == Job.State.FAILED
    return {
        "type": event_type,
        "timestamp": (job.finished_at or timezone.now()).isoformat(),
        "data": {
            "id": job.pk,
            "batch": str(job.batch),
            "state": job.state,
            "provider": job.provider,
            "options": job.options,
            "sandbox": job.sandbox,
            "input": {
                "name": job.input_name,
                "width": job.input_width,
                "height": job.input_height,
                "format": job.input_format,
            },
            "output": {
                "width": job.output_width,
                "height": job.output_height,
                "format": job.output_format,
                "bytes": job.output_bytes,
            }
            if succeeded
            else None,
            "cost": {
                "amount": money.exact(price.amount),
                "tier": price.tier,  # "charged", or "quoted" while nothing was charged
                "currency": "USD",
            },
            "result_url": _result_url(job.pk) if succeeded else None,
            "error": {"code": scrub(job.error_code), "message": scrub(job.error_message)}
            if failed
            else None,
        },
    }


def batch_payload(batch) -> dict:
    jobs = Job.objects.filter(batch=batch).order_by("pk")
    counts = jobs.aggregate(
        total=Count("pk"),
        succeeded=Count("pk", filter=Q(state=Job.State.SUCCEEDED)),
        failed=Count("pk", filter=Q(state=Job.State.FAILED)),
        canceled=Count("pk", filter=Q(state=Job.State.CANCELED)),
    )
    return {
        "type": "batch.ended",
        "timestamp": timezone.now().isoformat(),
        "data": {
            "batch": str(batch),
            "counts": counts,
            "jobs": [{"id": pk, "state": state} for pk, state in jobs.values_list("pk", "state")],
        },
    }


# --- signing --------------------------------------------------------------------------
def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header: "v1," + base64 HMAC-SHA256 of "id.timestamp.body",
    keyed with the base64-decoded part of "whsec_..."."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


# --- delivering -----------------------------------------------------------------------
def _due():
    return EventDelivery.objects.filter(
        delivered_at__isnull=True, gave_up_at__isnull=True, next_attempt_at__lte=timezone.now()
    )


def claim(delivery_id: int) -> bool:
    """Take the next attempt of a due delivery, at most once whoever asks: the attempt
    is counted and the delivery is not due again until the lease is over."""
    return bool(
        _due()
        .filter(pk=delivery_id)
        .update(
            attempts=F("attempts") + 1,
            next_attempt_at=timezone.now() + timedelta(seconds=CLAIM_SECONDS),
        )
    )


@dataclass
class Attempt:
    delivery: EventDelivery
    body: bytes = b""
    headers: dict | None = None
    status: int | None = None
    error: str = ""
    refused: bool = False  # the door will never send it there: give up now


def deliver_due(limit: int = DUE_BATCH) -> int:
    """The sweep's part: send what is due (first attempts whose task was lost, and
    retries whose delay is over). Returns how many were attempted."""
    ids = list(_due().order_by("next_attempt_at").values_list("pk", flat=True)[:limit])
    return deliver(ids)


def deliver(ids) -> int:
    """One attempt of each delivery in `ids` that is due and claimed here."""
    attempts = []
    for delivery_id in ids:
        if claim(delivery_id):
            attempts.append(_prepare(EventDelivery.objects.get(pk=delivery_id)))
    to_send = [a for a in attempts if not a.refused]
    if to_send:
        # No transaction is open here: nothing is locked while receivers answer.
        asyncio.run(_send_all(to_send))
    for attempt in attempts:
        _finish(attempt)
    return len(attempts)


def _prepare(delivery: EventDelivery) -> Attempt:
    attempt = Attempt(delivery)
    token = ApiToken.objects.filter(pk=delivery.token_id).first()
    if token is None:
        attempt.refused, attempt.error = True, "The API token that asked for it is gone."
        return attempt
    attempt.body = json.dumps(delivery.payload, separators=(",", ":")).encode()
    timestamp = int(time.time())
    attempt.headers = {
        "Content-Type": "application/json",
        "webhook-id": delivery.message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(_secret(token), delivery.message_id, timestamp, attempt.body),
    }
    return attempt


def _secret(token: ApiToken) -> str:
    from jobs.api.tokens import webhook_secret

    return webhook_secret(token)


async def _send_all(attempts: list[Attempt]) -> None:
    gate = asyncio.Semaphore(CONCURRENCY)
    async with door.client() as http:

        async def one(attempt):
            async with gate:
                await _send(http, attempt)

        await asyncio.gather(*(one(a) for a in attempts))


async def _send(http: httpx.AsyncClient, attempt: Attempt) -> None:
    url = attempt.delivery.url
    try:
        async with asyncio.timeout(DEADLINE):
            async with door.open_pinned(
                http,
                "POST",
                url,
                door.callback_rules(),
                content=attempt.body,
                headers=attempt.headers,
            ) as response:
                attempt.status = response.status_code
                await _read_some(response)
    except ProviderError as err:
        attempt.error = err.message
        attempt.refused = err.code == "bad_result_url"
    except TimeoutError:
        attempt.error = f"No answer within {DEADLINE:.0f} seconds."
    except httpx.HTTPError:
        attempt.error = "The receiver could not be reached."


async def _read_some(response: httpx.Response) -> None:
    # The answer means nothing to us: a few KB are read so the connection ends cleanly.
    seen = 0
    async for chunk in response.aiter_bytes():
        seen += len(chunk)
        if seen >= ANSWER_MAX_BYTES:
            break


def next_delay(attempts: int) -> float:
    """Seconds before the attempt after `attempts` tries, with jitter so receivers that
    were down together are not all called again at the same second."""
    base = SCHEDULE[attempts - 1] if attempts <= len(SCHEDULE) else HOURLY
    return base * random.uniform(1.0, 1.2)


def _finish(attempt: Attempt) -> None:
    delivery, now = attempt.delivery, timezone.now()
    fields = {"last_status": attempt.status, "last_error": scrub(attempt.error)[:ERROR_LENGTH]}
    ok = attempt.status is not None and 200 <= attempt.status < 300
    if ok:
        fields.update(delivered_at=now, next_attempt_at=None, last_error="")
    elif attempt.status is not None:
        fields["last_error"] = f"The receiver answered {attempt.status}."
    if not ok:
        when = now + timedelta(seconds=next_delay(delivery.attempts))
        if attempt.refused or when > delivery.created_at + GIVE_UP_AFTER:
            fields.update(gave_up_at=now, next_attempt_at=None)
        else:
            fields["next_attempt_at"] = when
    # Only the attempt claimed here is written (its count is the claim's).
    EventDelivery.objects.filter(pk=delivery.pk, attempts=delivery.attempts).update(**fields)
    host = shown_url(delivery.url)
    outcome = (
        "delivered"
        if ok
        else ("given up" if "gave_up_at" in fields else "to be tried again")
        + f": {fields['last_error']}"
    )
    log.info(
        "webhook %s (%s, attempt %s) to %s %s",
        delivery.message_id,
        delivery.event_type,
        delivery.attempts,
        host,
        outcome,
    )
