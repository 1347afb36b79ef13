"""Signed input links and the webhook door."""

import json
import time
from unittest import mock

import pytest
from django.core import signing
from django.utils import timezone

from jobs import inbound, lifecycle, tracker
from jobs.models import Heartbeat, Job, WebhookDelivery


@pytest.fixture
def running_job(make_job, owner, team):
    job = make_job(owner, team, run=False)
    lifecycle.claim(job.pk)
    Job.objects.filter(pk=job.pk).update(state=Job.State.RUNNING, provider_task_id="t-1")
    job.refresh_from_db()
    return job


def path(url):
    return url.split("://", 1)[1].split("/", 1)[1].join(["/", ""])


def test_a_signed_input_link_serves_the_input_while_the_job_runs(client, running_job):
    response = client.get(path(inbound.input_url(running_job)))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content).startswith(b"\x89PNG")


def test_an_altered_link_is_refused(client, running_job):
    url = path(inbound.input_url(running_job))
    assert client.get(url[:-3] + "xx/").status_code == 404


def test_an_expired_link_is_refused(client, running_job, settings):
    url = path(inbound.input_url(running_job))
    later = time.time() + settings.INPUT_URL_TTL + 5
    with mock.patch("django.core.signing.time.time", return_value=later):
        assert client.get(url).status_code == 404


def test_a_foreign_token_is_refused(client, running_job):
    other_salt = signing.dumps({"j": running_job.pk, "p": "local"}, salt="something-else")
    assert client.get(f"/inputs/{other_salt}/").status_code == 404
    wrong_provider = signing.dumps({"j": running_job.pk, "p": "pixazo"}, salt=inbound.INPUT_SALT)
    assert client.get(f"/inputs/{wrong_provider}/").status_code == 404


def test_the_link_dies_when_the_job_ends(client, running_job):
    url = path(inbound.input_url(running_job))
    lifecycle.fail(running_job.pk, [Job.State.RUNNING], "x", "stopped")
    assert client.get(url).status_code == 404


def hook(job, token=None):
    return f"/hooks/{job.provider}/{job.pk}/{token or job.webhook_token}/"


def test_a_forged_webhook_token_is_refused_and_changes_nothing(client, running_job):
    response = client.post(hook(running_job, "forged"), b"{}", content_type="application/json")
    assert response.status_code == 404
    assert WebhookDelivery.objects.count() == 0
    assert running_job.events.count() == Job.objects.get(pk=running_job.pk).events.count()


def test_a_webhook_for_another_provider_or_job_is_refused(client, running_job):
    url = f"/hooks/pixazo/{running_job.pk}/{running_job.webhook_token}/"
    assert client.post(url, b"{}", content_type="application/json").status_code == 404
    url = f"/hooks/local/999999/{running_job.webhook_token}/"
    assert client.post(url, b"{}", content_type="application/json").status_code == 404


def test_webhooks_take_posts_only(client, running_job):
    assert client.get(hook(running_job)).status_code == 405


def test_a_duplicate_delivery_is_recorded_once(client, make_job, owner, team):
    job = make_job(owner, team)  # finished: nothing to confirm
    for _ in range(3):
        response = client.post(hook(job), b'{"status": "done"}', content_type="application/json")
        assert response.status_code == 200
    assert WebhookDelivery.objects.filter(job=job).count() == 1
    assert response.json() == {"ok": True, "duplicate": True}
    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED


def test_without_a_tracker_a_webhook_queues_a_confirming_poll(client, running_job):
    with mock.patch("jobs.tasks.enqueue_poll") as enqueue_poll:
        client.post(hook(running_job), b'{"status": "done"}', content_type="application/json")
    enqueue_poll.assert_called_once_with(running_job.pk)
    running_job.refresh_from_db()
    assert running_job.state == Job.State.RUNNING  # nothing acted on the body itself
    assert "Webhook from Local (Pillow). Confirming" in running_job.events.last().detail


def test_with_a_live_tracker_a_webhook_makes_the_job_due_now(client, running_job):
    Job.objects.filter(pk=running_job.pk).update(
        next_poll_at=timezone.now() + timezone.timedelta(minutes=5)
    )
    tracker.beat()
    with mock.patch("jobs.tasks.enqueue_poll") as enqueue_poll:
        client.post(hook(running_job), b'{"status": "done"}', content_type="application/json")
    enqueue_poll.assert_not_called()  # the tracker's next tick (within a second) polls it
    running_job.refresh_from_db()
    assert running_job.next_poll_at <= timezone.now()


def test_a_stale_heartbeat_means_no_tracker(running_job):
    tracker.beat()
    assert tracker.is_alive()
    Heartbeat.objects.update(beat_at=timezone.now() - timezone.timedelta(seconds=30))
    assert not tracker.is_alive()


# --- bounded webhooks ----------------------------------------------------------------------
@pytest.fixture
def ximilar_job(running_job):
    """A running job of a provider whose webhook bodies are read for the timeline."""
    Job.objects.filter(pk=running_job.pk).update(provider="ximilar")
    running_job.refresh_from_db()
    return running_job


NESTED = b"[" * 200_000 + b"]" * 200_000


@pytest.mark.parametrize(
    "body",
    [
        NESTED,
        b'{"a": ' * 50_000 + b"1" + b"}" * 50_000,
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'"DONE"',
    ],
    ids=["nested-array", "nested-object", "not-json", "not-utf8", "a-list", "a-string"],
)
def test_an_unparsable_webhook_body_is_a_400_with_no_traceback(client, ximilar_job, body):
    client.raise_request_exception = False
    response = client.post(hook(ximilar_job), body, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"ok": False, "error": "The body must be a JSON object."}
    assert WebhookDelivery.objects.count() == 0
    assert "Webhook" not in "".join(ximilar_job.events.values_list("detail", flat=True))


def test_a_huge_webhook_body_is_refused_by_its_length_before_it_is_read(client, ximilar_job):
    consumed = []

    class Body:
        """A request body that counts what the view reads of it."""

        def read(self, size=-1):
            consumed.append(size)
            return b"{" + b" " * (max(size, 1) - 1)

        readline = read

    too_big = inbound.MAX_WEBHOOK_BYTES * 50
    response = client.generic(
        "POST",
        hook(ximilar_job),
        content_type="application/json",
        CONTENT_LENGTH=str(too_big),
        **{"wsgi.input": Body()},
    )
    assert response.status_code == 413
    assert sum(max(n, 0) for n in consumed) <= inbound.MAX_WEBHOOK_BYTES + 1
    assert WebhookDelivery.objects.count() == 0


def test_deliveries_per_job_are_capped_and_alike_ones_share_one_note(client, ximilar_job):
    for i in range(30):
        body = json.dumps({"status": "PROCESSING", "id": str(i)}).encode()
        response = client.post(hook(ximilar_job), body, content_type="application/json")
        assert response.status_code == 200
    assert WebhookDelivery.objects.filter(job=ximilar_job).count() == inbound.MAX_DELIVERIES_PER_JOB
    notes = [d for d in ximilar_job.events.values_list("detail", flat=True) if "Webhook" in d]
    assert notes == ["Webhook from Ximilar: says: PROCESSING. Confirming with Ximilar."]
    body = json.dumps({"status": "DONE"}).encode()
    response = client.post(hook(ximilar_job), body, content_type="application/json")
    assert response.json() == {"ok": True, "ignored": "too many deliveries for this job"}


def test_a_new_claim_after_alike_ones_gets_its_own_note(client, ximilar_job):
    for status in ("PROCESSING", "PROCESSING", "DONE"):
        body = json.dumps({"status": status, "nonce": time.monotonic_ns()}).encode()
        client.post(hook(ximilar_job), body, content_type="application/json")
    notes = [d for d in ximilar_job.events.values_list("detail", flat=True) if "Webhook" in d]
    assert [n.split(": says: ")[1].split(".")[0] for n in notes] == ["PROCESSING", "DONE"]


def test_a_link_signed_with_the_old_published_key_is_refused(client, running_job):
    # Before keys were required, the source's fallback SECRET_KEY signed input links; a
    # link forged with it must not open anything.
    forged = signing.dumps(
        {"j": running_job.pk, "p": running_job.provider},
        key="dev-only-insecure-key-set-SECRET_KEY-in-production",
        salt=inbound.INPUT_SALT,
        compress=True,
    )
    assert client.get(f"/inputs/{forged}/").status_code == 404
    assert client.get(path(inbound.input_url(running_job))).status_code == 200
