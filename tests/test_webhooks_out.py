"""Outbound webhooks: signed events (Standard Webhooks) to a real receiver on loopback,
checked by a verifier written here from the spec, not by the portal's own signer."""

import base64
import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from datetime import timedelta
from http.server import BaseHTTPRequestHandler

import pytest
from django.urls import reverse
from django.utils import timezone

from jobs import lifecycle, pipeline, tasks, webhooks_out
from jobs.api import tokens
from jobs.models import EventDelivery, Job
from tests.rows import bare_job
from tests.support import QuietHTTPServer

pytestmark = pytest.mark.django_db
State = Job.State


# --- an independent verifier, from the spec ---------------------------------------------
class Invalid(Exception):
    pass


def verify(secret: str, headers: dict, body: bytes, *, now=None, tolerance=300) -> dict:
    """Standard Webhooks: HMAC-SHA256 over "{webhook-id}.{webhook-timestamp}.{body}",
    keyed with the base64-decoded part of "whsec_<base64>"; the header is a space-separated
    list of "v1,<base64 signature>"; timestamps more than 5 minutes off are refused."""
    msg_id = headers["webhook-id"]
    stamp = headers["webhook-timestamp"]
    now = time.time() if now is None else now
    if abs(now - int(stamp)) > tolerance:
        raise Invalid("timestamp too far off")
    assert secret.startswith("whsec_")
    key = base64.b64decode(secret[len("whsec_") :])
    content = msg_id.encode() + b"." + stamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    for part in headers["webhook-signature"].split(" "):
        version, _, signature = part.partition(",")
        if version == "v1" and hmac.compare_digest(signature, expected):
            return json.loads(body)
    raise Invalid("no matching signature")


# --- a real receiver on loopback ---------------------------------------------------------
class Receiver:
    """Records every request; answers with the next of `statuses` (then 204)."""

    def __init__(self):
        self.requests = []
        self.statuses = []
        self.release = threading.Event()
        self.hang = False
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append(
                    {
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                    }
                )
                if receiver.hang:
                    receiver.release.wait(10)
                status = receiver.statuses.pop(0) if receiver.statuses else 204
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/in?key=receiver-own-key"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    got = Receiver()
    yield got
    got.close()


@pytest.fixture
def token(owner):
    row, _plain = tokens.create(owner, "ci")
    return row


@pytest.fixture
def hooked(team, owner, token, receiver, settings, sync_tasks):
    """hooked(n, url=...): n running jobs of one batch created through the API with a
    webhook URL. Tasks run at once (sync): a queued delivery is sent on commit."""
    settings.PUBLIC_BASE_URL = "https://portal.example"

    def make(n=1, url=None):
        batch = uuid.uuid4()
        return [
            bare_job(
                team,
                batch=batch,
                created_by=owner,
                provider="pixazo",
                state=State.RUNNING,
                api_token=token,
                webhook_url=url or receiver.url,
            )
            for _ in range(n)
        ]

    return make


def succeed(job):
    return lifecycle.move(
        job.pk,
        [State.RUNNING],
        State.SUCCEEDED,
        "done",
        output_width=2000,
        output_height=1000,
        output_format="PNG",
        output_bytes=1234,
    )


def posted(receiver, event_type):
    """The one request of that event (the job's and its batch's arrive in either order)."""
    (found,) = [r for r in receiver.requests if json.loads(r["body"])["type"] == event_type]
    return found


def end(capture, *jobs, how=succeed):
    with capture(execute=True):
        for job in jobs:
            how(job)


def overdue(delivery):
    EventDelivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )


# --- the tests -------------------------------------------------------------------------------
def test_a_job_that_ends_sends_one_signed_event(
    hooked, receiver, token, django_capture_on_commit_callbacks
):
    (job,) = hooked()
    end(django_capture_on_commit_callbacks, job)

    got = posted(receiver, "job.succeeded")
    assert got["path"] == "/hooks/in?key=receiver-own-key"
    assert got["headers"]["content-type"] == "application/json"
    assert got["headers"]["webhook-id"].startswith("msg_")
    event = verify(tokens.webhook_secret(token), got["headers"], got["body"])
    assert event["type"] == "job.succeeded"
    data = event["data"]
    assert data["id"] == job.pk and data["state"] == "succeeded" and data["provider"] == "pixazo"
    assert data["output"] == {"width": 2000, "height": 1000, "format": "PNG", "bytes": 1234}
    assert data["result_url"] == f"https://portal.example/api/v1/jobs/{job.pk}/result"
    assert data["cost"]["currency"] == "USD" and data["error"] is None
    delivery = EventDelivery.objects.get(job=job)
    assert delivery.event_type == "job.succeeded"
    assert delivery.message_id == got["headers"]["webhook-id"]
    assert delivery.delivered_at is not None and delivery.attempts == 1
    assert delivery.last_status == 204 and delivery.next_attempt_at is None


def test_the_verifier_refuses_a_tampered_body_an_old_timestamp_and_another_secret(
    hooked, receiver, token, owner, django_capture_on_commit_callbacks
):
    (job,) = hooked()
    end(django_capture_on_commit_callbacks, job)
    got = posted(receiver, "job.succeeded")
    secret = tokens.webhook_secret(token)
    verify(secret, got["headers"], got["body"])  # the genuine one passes
    with pytest.raises(Invalid, match="signature"):
        verify(secret, got["headers"], got["body"].replace(b"pixazo", b"pixazO"))
    with pytest.raises(Invalid, match="timestamp"):
        verify(secret, got["headers"], got["body"], now=time.time() + 6 * 60)
    other, _ = tokens.create(owner, "another")
    with pytest.raises(Invalid, match="signature"):
        verify(tokens.webhook_secret(other), got["headers"], got["body"])


def test_a_failed_job_sends_its_scrubbed_error(
    hooked, receiver, token, settings, django_capture_on_commit_callbacks
):
    (job,) = hooked()
    leaked = f"bad key {settings.SECRET_KEY}"
    end(
        django_capture_on_commit_callbacks,
        job,
        how=lambda j: lifecycle.fail(j.pk, [State.RUNNING], "provider_error", leaked),
    )
    got = posted(receiver, "job.failed")
    event = verify(tokens.webhook_secret(token), got["headers"], got["body"])
    assert event["type"] == "job.failed"
    assert event["data"]["error"]["code"] == "provider_error"
    assert settings.SECRET_KEY not in json.dumps(event)
    assert event["data"]["result_url"] is None


def test_a_batch_sends_one_batch_event_when_its_last_job_ends(
    hooked, receiver, token, django_capture_on_commit_callbacks
):
    first, second = hooked(2)
    end(django_capture_on_commit_callbacks, first)
    assert [json.loads(r["body"])["type"] for r in receiver.requests] == ["job.succeeded"]

    end(
        django_capture_on_commit_callbacks,
        second,
        how=lambda j: lifecycle.fail(j.pk, [State.RUNNING], "provider_error", "It broke."),
    )
    types = sorted(json.loads(r["body"])["type"] for r in receiver.requests)
    assert types == ["batch.ended", "job.failed", "job.succeeded"]
    (batch_post,) = [r for r in receiver.requests if b"batch.ended" in r["body"]]
    event = verify(tokens.webhook_secret(token), batch_post["headers"], batch_post["body"])
    assert event["data"]["batch"] == str(first.batch)
    assert event["data"]["counts"] == {"total": 2, "succeeded": 1, "failed": 1, "canceled": 0}
    assert {j["id"] for j in event["data"]["jobs"]} == {first.pk, second.pk}
    assert EventDelivery.objects.filter(batch=first.batch, event_type="batch.ended").count() == 1


def test_a_repeated_hook_or_task_makes_no_second_event_or_post(
    hooked, receiver, django_capture_on_commit_callbacks
):
    (job,) = hooked()
    end(django_capture_on_commit_callbacks, job)
    assert not succeed(job)  # moved already: nothing happens
    with django_capture_on_commit_callbacks(execute=True):
        webhooks_out.job_ended(job.pk)  # the hook itself, run again
    ids = list(EventDelivery.objects.values_list("pk", flat=True))
    assert len(ids) == 2  # the job's event and its (one-job) batch's
    tasks.deliver_webhooks(*ids)  # the delivery task, run again
    webhooks_out.deliver_due()
    assert len(receiver.requests) == 2
    assert len({r["headers"]["webhook-id"] for r in receiver.requests}) == 2


def test_an_attempt_claimed_by_one_worker_is_not_sent_by_another(
    hooked, receiver, django_capture_on_commit_callbacks
):
    (job,) = hooked()
    with django_capture_on_commit_callbacks(execute=False):
        succeed(job)  # committed, but its task not run yet
    delivery = EventDelivery.objects.get(job=job)
    assert webhooks_out.claim(delivery.pk)  # another worker holds this attempt
    assert webhooks_out.deliver([delivery.pk]) == 0
    assert not webhooks_out.claim(delivery.pk)
    assert receiver.requests == []


def test_a_receiver_error_is_tried_again_later_then_delivered(
    hooked, receiver, token, django_capture_on_commit_callbacks
):
    receiver.statuses = [500, 500]  # the job's event, then the batch's
    (job,) = hooked()
    before = timezone.now()
    end(django_capture_on_commit_callbacks, job)
    delivery = EventDelivery.objects.get(job=job)
    assert delivery.delivered_at is None and delivery.gave_up_at is None
    assert delivery.attempts == 1 and delivery.last_status == 500
    assert "500" in delivery.last_error
    wait = (delivery.next_attempt_at - before).total_seconds()
    assert 5 <= wait <= 6 + 5  # the first step of the backoff, with jitter

    assert webhooks_out.deliver_due() == 0  # not due yet: nobody sleeps, nothing is sent
    assert len(receiver.requests) == 2

    overdue(delivery)
    pipeline.sweep()  # the minute's sweep picks it up
    delivery.refresh_from_db()
    assert delivery.delivered_at is not None and delivery.attempts == 2
    assert delivery.last_status == 204 and delivery.last_error == ""
    first, again = [r for r in receiver.requests if b"job.succeeded" in r["body"]]
    assert first["headers"]["webhook-id"] == again["headers"]["webhook-id"]
    verify(tokens.webhook_secret(token), again["headers"], again["body"])


def test_the_backoff_grows_and_gives_up_after_a_day(
    hooked, receiver, django_capture_on_commit_callbacks
):
    delays = [webhooks_out.next_delay(n) for n in range(1, 9)]
    assert delays[:6] == sorted(delays[:6]) and 5 <= delays[0] <= 6
    assert all(3600 <= d <= 3600 * 1.2 for d in delays[5:])  # then every hour

    receiver.statuses = [503] * 10
    (job,) = hooked()
    with django_capture_on_commit_callbacks(execute=False):
        succeed(job)
    delivery = EventDelivery.objects.get(job=job)
    EventDelivery.objects.filter(pk=delivery.pk).update(
        created_at=timezone.now() - timedelta(hours=23, minutes=59), attempts=7
    )
    webhooks_out.deliver([delivery.pk])
    delivery.refresh_from_db()
    assert delivery.gave_up_at is not None and delivery.next_attempt_at is None
    assert delivery.attempts == 8 and delivery.delivered_at is None
    assert webhooks_out.deliver_due() == 1  # only the batch's event is still due


def test_a_receiver_that_does_not_answer_in_time_is_tried_again(
    hooked, receiver, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(webhooks_out, "DEADLINE", 0.5)
    receiver.hang = True
    (job,) = hooked()
    with django_capture_on_commit_callbacks(execute=False):
        succeed(job)
    delivery = EventDelivery.objects.get(job=job)
    webhooks_out.deliver([delivery.pk])
    receiver.release.set()
    delivery.refresh_from_db()
    assert delivery.delivered_at is None and delivery.gave_up_at is None
    assert "No answer within" in delivery.last_error and delivery.next_attempt_at is not None


def test_a_private_address_is_given_up_at_once_with_the_reason(
    hooked, receiver, django_capture_on_commit_callbacks
):
    (job,) = hooked(url="https://10.0.0.7/hooks/in")
    end(django_capture_on_commit_callbacks, job)
    delivery = EventDelivery.objects.get(job=job)
    assert delivery.gave_up_at is not None and delivery.attempts == 1
    assert "private network address" in delivery.last_error
    assert delivery.next_attempt_at is None
    assert receiver.requests == []


def test_loopback_is_refused_when_the_sandboxes_are_off(
    hooked, receiver, settings, django_capture_on_commit_callbacks
):
    settings.SANDBOX_ENABLED = False  # production: public https receivers only
    (job,) = hooked()
    end(django_capture_on_commit_callbacks, job)
    delivery = EventDelivery.objects.get(job=job)
    assert delivery.gave_up_at is not None and "not https" in delivery.last_error
    assert receiver.requests == []


def test_a_job_without_a_webhook_url_makes_no_event(
    team, owner, token, django_capture_on_commit_callbacks
):
    job = bare_job(team, created_by=owner, provider="pixazo", state=State.RUNNING)
    end(django_capture_on_commit_callbacks, job)
    assert not EventDelivery.objects.exists()


def test_no_secret_in_the_stored_payload_or_the_logs(
    hooked, receiver, token, caplog, django_capture_on_commit_callbacks
):
    receiver.statuses = [500, 500]
    (job,) = hooked()
    with caplog.at_level(logging.DEBUG):
        end(django_capture_on_commit_callbacks, job)
        for delivery in EventDelivery.objects.all():
            overdue(delivery)
        assert webhooks_out.deliver_due() == 2
    secret = tokens.webhook_secret(token)
    key = secret.removeprefix("whsec_")
    stored = json.dumps(list(EventDelivery.objects.values("payload", "last_error", "url")))
    for text in (stored, caplog.text):
        assert secret not in text and key not in text and token.digest not in text
    assert "webhook msg_" in caplog.text  # the deliveries were logged
    assert "receiver-own-key" not in caplog.text  # host + path only
    assert len(receiver.requests) == 4


def test_the_job_page_shows_its_deliveries_to_the_team(
    hooked, receiver, client, teammate, outsider, django_capture_on_commit_callbacks
):
    receiver.statuses = [500]
    (job,) = hooked()
    end(django_capture_on_commit_callbacks, job)
    client.force_login(teammate)
    page = client.get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert "Webhook deliveries" in page
    assert "job.succeeded" in page and "batch.ended" in page
    assert "The receiver answered 500." in page and "Answered 204." in page
    assert "Next attempt" in page and "Delivered" in page
    assert f"127.0.0.1:{receiver.server.server_port}/hooks/in" in page
    assert "receiver-own-key" not in page  # the receiver's query is its own business
    client.force_login(outsider)
    assert client.get(reverse("jobs:detail", args=[job.pk])).status_code == 404


def test_a_job_page_without_a_webhook_has_no_deliveries_section(owner_client, team, owner):
    job = bare_job(team, created_by=owner, provider="pixazo", state=State.SUCCEEDED)
    page = owner_client.get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert "Webhook deliveries" not in page


def test_a_job_run_end_to_end_sends_its_event(
    make_job, inline_tasks, owner, team, token, receiver, settings
):
    """The whole path: upload, the local provider's upscale, the result stored, the event."""
    settings.PUBLIC_BASE_URL = "https://portal.example"
    job = make_job(owner, team, run=False)
    Job.objects.filter(pk=job.pk).update(api_token=token, webhook_url=receiver.url)
    with inline_tasks():
        tasks.enqueue_submit([job.pk])
    job.refresh_from_db()
    assert job.state == State.SUCCEEDED
    got = posted(receiver, "job.succeeded")
    data = verify(tokens.webhook_secret(token), got["headers"], got["body"])["data"]
    assert data["id"] == job.pk and data["provider"] == "local"
    assert (data["output"]["width"], data["output"]["height"]) == (
        job.output_width,
        job.output_height,
    )
    assert data["cost"] == {"amount": "0.0000", "tier": "charged", "currency": "USD"}
    assert EventDelivery.objects.get(job=job).delivered_at is not None
