"""APIXO (doc 004): the adapter against its sandbox over real HTTP, and the sandbox
against the document (paths, auth, validation texts, envelopes, states, callbacks)."""

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from jobs import http as door
from jobs import intake
from jobs.inbound import input_url
from jobs.models import Job, JobEvent, WebhookDelivery
from jobs.providers import ProviderError, Running
from jobs.providers.apixo import ApixoProvider
from jobs.sandbox.models import SandboxTask
from tests.images import image_bytes
from tests.support import SANDBOX_KEY, states, wait_until

SLUG = "apixo"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / SLUG
WRONG_KEY = "apixo-wrong-key-7f3a9c"  # distinctive, so "never in a message" means something


# --- helpers ------------------------------------------------------------------------------
def doc(name: str) -> dict:
    """A payload recorded from the document."""
    return json.loads((FIXTURES / f"{name}.json").read_text())


def shape(value):
    """Keys and value types, recursively: what the document's examples promise."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value[:1]]
    return type(value).__name__


def details(job) -> list[str]:
    return list(JobEvent.objects.filter(job=job).values_list("detail", flat=True))


def api(sandbox, key=None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key or settings.SANDBOX_API_KEY}"}
    return httpx.Client(base_url=f"{sandbox.url}/sandbox/{SLUG}/", headers=headers, timeout=10)


def valid_body(url="http://127.0.0.1:9/nothing.png", **input_fields) -> dict:
    return {
        "request_type": "async",
        "input": {
            "mode": "image-to-image",
            "image_urls": [url],
            "resolution": "2k",
            "output_format": "jpg",
            **input_fields,
        },
    }


def hook_url(job, token=None) -> str:
    return f"{settings.PUBLIC_BASE_URL}/hooks/{SLUG}/{job.pk}/{token or job.webhook_token}/"


@pytest.fixture
def hints(monkeypatch):
    """The webhook bodies that reached our hook view, in order."""
    bodies = []
    original = ApixoProvider.webhook_hint

    def spy(self, body):
        bodies.append(body)
        return original(self, body)

    monkeypatch.setattr(ApixoProvider, "webhook_hint", spy)
    return bodies


# --- end to end ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "image, resolution, fmt, size",
    [
        ({"width": 96, "height": 80}, "2k", "png", (2048, 1707)),
        ({"width": 72, "height": 120}, "2k", "webp", (1229, 2048)),
    ],
)
def test_it_upscales_end_to_end_to_the_predicted_size(
    sandbox, submit, image, resolution, fmt, size
):
    # Callbacks are covered below; here the tracker alone drives the job.
    sandbox.faults(SLUG, webhook="off")
    job = submit(SLUG, image=image, resolution=resolution, output_format=fmt)
    assert (job.predicted_width, job.predicted_height) == size

    job = sandbox.settle(job)

    assert job.state == Job.State.SUCCEEDED, details(job)
    assert (job.output_width, job.output_height) == size
    assert job.output_format == {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}[fmt]
    assert job.sandbox and job.attempts == 1 and job.error_code == ""
    assert SandboxTask.objects.get(provider=SLUG).public_id == job.provider_task_id
    assert states(job) == ["queued", "submitting", "running", "fetching", "succeeded"]
    text = " ".join(details(job))
    assert f"APIXO accepted the job (task {job.provider_task_id})" in text
    assert f"Stored the {size[0]}x{size[1]}" in text
    assert job.submitted_at <= job.finished_at


@pytest.mark.parametrize("webhooks", [True, False], ids=["callback", "async"])
def test_it_sends_the_documented_requests(sandbox, submit, settings, sent_requests, webhooks):
    settings.WEBHOOKS_ENABLED = webhooks
    # A long task and no callback: we see the submit, then the tracker's first poll.
    sandbox.faults(SLUG, latency=60, webhook="off")
    base = f"{sandbox.url}/sandbox/{SLUG}"

    def polled(job):
        return any(r.url.path.endswith("/statusTask/image-upscaler") for r in sent_requests)

    job = sandbox.settle(submit(SLUG, resolution="2k", output_format="png"), until=polled)
    assert job.state == Job.State.RUNNING

    posts = [r for r in sent_requests if r.method == "POST"]
    assert len(posts) == 1
    sent = posts[0]
    assert str(sent.url) == f"{base}/generateTask/image-upscaler"
    assert sent.headers["Authorization"] == f"Bearer {SANDBOX_KEY}"
    assert sent.headers["Content-Type"] == "application/json"
    body = json.loads(sent.content)
    documented = doc("submit_request_callback" if webhooks else "submit_request")
    assert shape(body) == shape(documented)
    assert body["request_type"] == ("callback" if webhooks else "async")
    if webhooks:
        assert body["callback_url"] == hook_url(job)
    assert body["input"]["mode"] == "image-to-image"
    assert body["input"]["image_urls"][0].startswith(f"{sandbox.url}/inputs/")
    assert body["input"]["resolution"] == "2k"
    assert body["input"]["output_format"] == "png"

    polls = [r for r in sent_requests if r.url.path.endswith("/statusTask/image-upscaler")]
    assert polls
    for poll in polls:
        assert poll.method == "GET"
        assert str(poll.url) == f"{base}/statusTask/image-upscaler?taskId={job.provider_task_id}"
        assert poll.headers["Authorization"] == f"Bearer {SANDBOX_KEY}"


def test_it_asks_for_callbacks_only_on_https_or_from_the_sandbox(settings):
    provider = ApixoProvider()
    job = Job(pk=7, webhook_token="tok", provider=SLUG)
    settings.PUBLIC_BASE_URL = "http://portal.example"
    assert provider.is_sandbox
    assert provider.callback_url(job) == "http://portal.example/hooks/apixo/7/tok/"

    settings.PROVIDER_SETTINGS = {SLUG: {"api_key": "real", "base_url": ""}}
    assert provider.base_url == "https://api.apixo.ai/api/v1"
    assert provider.callback_url(job) == ""  # APIXO wants a public https callback
    settings.PUBLIC_BASE_URL = "https://portal.example"
    assert provider.callback_url(job) == "https://portal.example/hooks/apixo/7/tok/"
    settings.WEBHOOKS_ENABLED = False
    assert provider.callback_url(job) == ""


def test_it_polls_as_apixo_recommends_but_quickly_in_the_sandbox(settings):
    provider = ApixoProvider()
    assert provider.first_poll_delay() == 1.0 and provider.poll_delay(0) < 5
    settings.PROVIDER_SETTINGS = {SLUG: {"api_key": "real", "base_url": ""}}
    # The document: first poll 10-15 s after creation, then every 5-10 s (8k: 10 s+).
    assert provider.first_poll_delay() == 10.0
    assert [provider.poll_delay(n) for n in (0, 5, 50)] == [10.0, 10.0, 10.0]


# --- errors ----------------------------------------------------------------------------------
def test_it_fails_with_a_plain_message_when_the_key_is_refused(sandbox, submit, settings):
    settings.PROVIDER_SETTINGS = {
        **settings.PROVIDER_SETTINGS,
        SLUG: {"api_key": WRONG_KEY, "base_url": f"{sandbox.url}/sandbox/{SLUG}"},
    }
    job = sandbox.settle(submit(SLUG, resolution="2k"))

    assert job.state == Job.State.FAILED
    assert job.error_code == "invalid_api_key"
    assert job.error_message == (
        "APIXO refused the API key (Missing or invalid API key). "
        "An admin needs to check APIXO_API_KEY."
    )
    assert job.attempts == 1  # never retried
    assert not SandboxTask.objects.exists()
    for detail in details(job) + [job.error_message]:
        assert WRONG_KEY not in detail


# What the adapter makes of each status of the document's table, on either call.
DOCUMENTED_STATUSES = {
    400: ("invalid_request", "Invalid request body"),
    401: ("invalid_api_key", "Missing or invalid API key"),
    402: ("insufficient_balance", "Insufficient balance or quota"),
    403: ("access_denied", "Key or route cannot access the model"),
    404: ("task_not_found", "Task not found"),
    429: ("rate_limited", "Rate limit or concurrency limit reached"),
    500: ("server_error", "Server or unmapped upstream error"),
    502: ("upstream_error", "Upstream service error"),
    504: ("upstream_timeout", "Upstream timeout"),
}


def call_adapter(method: str, job=None, transport=None):
    job = job or Job(
        pk=1,
        provider=SLUG,
        webhook_token="t",
        provider_task_id="task_1",
        options={"resolution": "2k", "output_format": "jpg"},
    )

    async def go():
        if transport:
            async with httpx.AsyncClient(transport=transport) as client:
                return await getattr(ApixoProvider(), method)(job, client)
        async with door.client() as client:
            return await getattr(ApixoProvider(), method)(job, client)

    return asyncio.run(go())


def test_it_classifies_every_documented_error_status(sandbox):
    for call in ("submit", "poll"):
        for status, (code, said) in DOCUMENTED_STATUSES.items():
            sandbox.faults(SLUG, error_status=status, error_count=1, error_on=call, retry_after=3)
            with pytest.raises(ProviderError) as raised:
                call_adapter(call)
            err = raised.value
            retryable = status in (429, 500, 502, 504)
            assert (err.code, err.status, err.retryable) == (code, status, retryable), call
            assert err.message.startswith("APIXO ") and f"{said}" in err.message
            assert err.retry_after == (3 if retryable else None)
            assert not err.maybe_received  # it answered: a submit may be sent again
    assert not SandboxTask.objects.exists()


def test_it_reads_errors_inside_a_200_envelope_and_refuses_a_malformed_success():
    def answering(status, body):
        return httpx.MockTransport(lambda request: httpx.Response(status, json=body))

    cases = [
        ({"code": 402, "message": "Insufficient balance", "data": None}, "insufficient_balance"),
        ({"code": 429, "message": "Slow down", "data": None}, "rate_limited"),
        ({"code": 200, "message": "success", "data": None}, "bad_answer"),
    ]
    for body, code in cases:
        with pytest.raises(ProviderError) as raised:
            call_adapter("submit", transport=answering(200, body))
        assert raised.value.code == code
        assert raised.value.retryable == (code == "rate_limited")

    garbled = {"taskId": "task_1", "state": "success", "resultJson": "{not json"}
    with pytest.raises(ProviderError, match="gave no result link"):
        call_adapter("poll", transport=answering(200, {"code": 200, "data": garbled}))
    unknown = {"taskId": "task_1", "state": "queued-somewhere"}  # not documented: keep polling
    result = call_adapter("poll", transport=answering(200, {"code": 200, "data": unknown}))
    assert result == Running("task_1")


@pytest.mark.parametrize(
    "status, call, code, words",
    [
        (400, "submit", "invalid_request", "APIXO refused the request (Invalid request body)"),
        (402, "submit", "insufficient_balance", "balance or quota is used up"),
        (403, "submit", "access_denied", "may not use the Image Upscaler"),
        (404, "poll", "task_not_found", "APIXO does not know this task or model (Task not found)"),
    ],
)
def test_it_fails_on_a_final_error_with_the_status_and_a_plain_message(
    sandbox, submit, status, call, code, words
):
    sandbox.faults(SLUG, error_status=status, error_count=1, error_on=call, webhook="off")
    job = sandbox.settle(submit(SLUG, resolution="2k"))

    assert job.state == Job.State.FAILED
    assert (job.error_code, job.attempts) == (code, 1)
    assert words in job.error_message
    assert SandboxTask.objects.count() == (1 if call == "poll" else 0)


@pytest.mark.parametrize("status", [429, 502])  # every status: see the test above
def test_it_retries_a_busy_or_failing_submit_after_retry_after_then_succeeds(
    sandbox, submit, status
):
    sandbox.faults(SLUG, error_status=status, error_count=1, error_on="submit", retry_after=2)
    job = submit(SLUG, resolution="2k")

    # Parked, not failed: due again no sooner than the provider's Retry-After.
    assert job.state == Job.State.QUEUED
    assert (job.next_poll_at - job.updated_at).total_seconds() >= 1.9

    job = sandbox.settle(job)
    assert job.state == Job.State.SUCCEEDED
    assert job.attempts == 2
    text = " ".join(details(job))
    busy = "APIXO is busy (rate limited)" if status == 429 else f"server error ({status})"
    assert busy in text and "Trying again" in text and "(attempt 2)" in text
    assert SandboxTask.objects.count() == 1


@pytest.mark.parametrize("status", [500, 504])  # every status: see the test above
def test_it_keeps_polling_through_a_server_error_then_succeeds(sandbox, submit, status):
    sandbox.faults(SLUG, error_status=status, error_count=1, error_on="poll", webhook="off")
    job = sandbox.settle(submit(SLUG, resolution="2k"))

    assert job.state == Job.State.SUCCEEDED
    assert job.attempts == 1
    assert any("Checking on the job failed" in d and "Retrying" in d for d in details(job))


def test_it_does_not_resend_a_submit_that_timed_out(sandbox, submit, settings):
    settings.PROVIDER_TIMEOUT = 0.5
    sandbox.faults(SLUG, slow_seconds=0.8, webhook="off")
    job = sandbox.settle(submit(SLUG, resolution="2k"))

    assert job.state == Job.State.FAILED
    assert job.error_code == "submit_unknown"
    assert "did not answer in time" in job.error_message
    assert "not sent again" in job.error_message
    # The slow sandbox still takes the request, once, after we stopped waiting.
    wait_until(lambda: SandboxTask.objects.filter(provider=SLUG).exists())
    job.refresh_from_db()
    assert job.attempts == 1
    assert SandboxTask.objects.filter(provider=SLUG).count() == 1


@pytest.mark.parametrize(
    "code, message",
    [
        (
            "SensitiveContent",
            "APIXO's safety check refused this image (SensitiveContent). Try a different image.",
        ),
        (
            "ImageFormatIncorrect",
            "APIXO could not read this image (ImageFormatIncorrect). Use a JPG, PNG or WebP image.",
        ),
        ("RateLimited", "APIXO was too busy and gave up on the task (RateLimited)."),
        ("Timeout", "APIXO did not finish the task in time (Timeout)."),
        ("Unknown error", "APIXO could not upscale this image (Unknown error: Unknown error.)."),
    ],
)
def test_it_fails_with_the_tasks_failure_code_and_a_plain_message(sandbox, submit, code, message):
    sandbox.faults(SLUG, task_failure=code)
    job = sandbox.settle(submit(SLUG, resolution="2k"))

    assert job.state == Job.State.FAILED
    assert job.error_code == code
    assert job.error_message.startswith(message)
    if code == "Unknown error":
        assert job.provider_task_id in job.error_message  # what support will ask for


def test_it_fails_with_image_format_incorrect_when_apixo_cannot_fetch_the_input(
    sandbox, submit, monkeypatch
):
    monkeypatch.setattr("jobs.inbound.input_url", lambda job: f"{sandbox.url}/inputs/gone/")
    job = sandbox.settle(submit(SLUG, resolution="2k"))

    assert job.state == Job.State.FAILED
    assert job.error_code == "ImageFormatIncorrect"
    assert "could not read this image" in job.error_message


def test_it_fails_plainly_when_the_result_link_has_expired(sandbox, submit):
    # A re-poll hands out a freshly signed link; with the fault on, that one is expired
    # too, so the job fails instead of being submitted (and charged) again.
    sandbox.faults(SLUG, expired_results=True, webhook="off")
    job = sandbox.settle(submit(SLUG, resolution="2k"))

    assert job.state == Job.State.FAILED
    assert job.error_code == "result_expired"
    assert "expired" in job.error_message and "APIXO" in job.error_message
    assert SandboxTask.objects.count() == 1


def test_it_refuses_options_apixo_does_not_offer_before_sending(sandbox, submit):
    with pytest.raises(intake.SubmissionRefused) as refused:
        submit(SLUG, resolution="3k")
    assert refused.value.errors == ["APIXO: Resolution '3k' is not offered. Allowed: 2k, 4k, 8k."]
    with pytest.raises(intake.SubmissionRefused) as refused:
        submit(SLUG, output_format="gif")
    assert refused.value.errors == [
        # "keep" (keep transparency) is resolved to png or jpg per image, issue #11.
        "APIXO: Format 'gif' is not offered. Allowed: keep, jpg, png, webp."
    ]
    assert not Job.objects.exists()
    assert not SandboxTask.objects.exists()


def test_it_takes_options_in_any_case_like_apixo_does():
    cleaned = ApixoProvider().clean_options({"resolution": "8K", "output_format": "PNG"})
    assert cleaned == {"resolution": "8k", "output_format": "png"}


# --- webhooks (callbacks) -----------------------------------------------------------------
def test_it_finishes_from_the_callback_without_waiting_for_a_poll(sandbox, submit, hints):
    sandbox.faults(SLUG, latency=0.3)
    job = submit(SLUG, resolution="2k")
    assert job.state == Job.State.RUNNING

    # No tracker runs here: only the callback can move the job on.
    wait_until(lambda: Job.objects.get(pk=job.pk).state in Job.FINAL_STATES)
    job.refresh_from_db()

    assert job.state == Job.State.SUCCEEDED
    assert job.poll_count == 0
    assert any(d.startswith("Webhook from APIXO: says: success.") for d in details(job))
    assert WebhookDelivery.objects.filter(job=job).count() == 1
    (payload,) = hints
    assert shape(payload) == shape(doc("callback_success"))
    assert shape(json.loads(payload["data"]["resultJson"])) == shape(
        json.loads(doc("callback_success")["data"]["resultJson"])
    )
    assert payload["data"]["taskId"] == job.provider_task_id


def test_a_duplicate_callback_changes_nothing(sandbox, submit, hints):
    sandbox.faults(SLUG, latency=0.2, webhook="duplicate")
    job = submit(SLUG, resolution="2k")

    wait_until(lambda: len(hints) == 2 and Job.objects.get(pk=job.pk).state == "succeeded")
    assert hints[0] == hints[1]
    assert WebhookDelivery.objects.filter(job=job).count() == 1
    assert states(job).count("succeeded") == 1
    assert JobEvent.objects.filter(job=job, state="fetching").count() == 1
    assert JobEvent.objects.filter(job=job, detail__startswith="Webhook").count() == 1


def test_a_forged_callback_is_refused_and_changes_nothing(sandbox, submit):
    sandbox.faults(SLUG, webhook="off")
    job = submit(SLUG, resolution="2k")
    before = details(job)
    forged = {"code": 200, "message": "success", "data": {"taskId": "x", "state": "failed"}}

    answer = httpx.post(hook_url(job, token="forged-token"), json=forged, timeout=10)

    assert answer.status_code == 404
    job.refresh_from_db()
    assert job.state == Job.State.RUNNING and details(job) == before
    assert not WebhookDelivery.objects.exists()
    assert sandbox.settle(job).state == Job.State.SUCCEEDED


def test_a_stale_or_out_of_order_callback_changes_nothing(sandbox, submit):
    sandbox.faults(SLUG, webhook="off")
    job = sandbox.settle(submit(SLUG, resolution="2k"))
    assert job.state == Job.State.SUCCEEDED
    before = (details(job), job.output_file.name, job.finished_at)
    task = job.provider_task_id
    stale = [
        {"code": 200, "message": "success", "data": {"taskId": task, "state": "processing"}},
        {
            "code": 200,
            "message": "success",
            "data": {"taskId": task, "state": "failed", "failCode": "Timeout", "failMsg": "x"},
        },
    ]
    for body in stale:
        assert httpx.post(hook_url(job), json=body, timeout=10).status_code == 200

    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED and job.error_code == ""
    assert (details(job), job.output_file.name, job.finished_at) == before


def test_the_webhook_hint_reads_the_callback_and_tolerates_garbage():
    hint = ApixoProvider().webhook_hint
    assert hint(doc("callback_success")) == "says: success"
    assert hint(doc("status_failed")) == "says: failed (Unknown error)"
    # Bodies that are not JSON objects never get here: the hook view answers them 400.
    for garbage in ({}, {"data": None}, {"data": {}}, {"data": []}):
        assert hint(garbage) == "unreadable body"


# --- the command line ------------------------------------------------------------------------
def test_the_upscale_command_creates_an_apixo_job_and_refuses_a_bad_tier(tmp_path, owner):
    path = tmp_path / "photo.png"
    path.write_bytes(image_bytes(100, 64))

    call_command(
        "upscale", str(path), "--provider", "apixo", "--resolution", "2k", "--user", "alice"
    )
    job = Job.objects.get()
    assert (job.provider, job.options) == (SLUG, {"resolution": "2k", "output_format": "jpg"})
    assert (job.predicted_width, job.predicted_height) == (2048, 1311)

    with pytest.raises(CommandError, match=r"Resolution '3k' is not offered. Allowed: 2k, 4k, 8k"):
        call_command(
            "upscale", str(path), "--provider", "apixo", "--resolution", "3k", "--user", "alice"
        )
    assert Job.objects.count() == 1


# --- the sandbox itself ------------------------------------------------------------------------
def test_the_sandbox_refuses_a_missing_or_wrong_key(sandbox):
    base = f"{sandbox.url}/sandbox/{SLUG}"
    for authorization in (None, "Bearer nope", f"Token {SANDBOX_KEY}", SANDBOX_KEY, "bearer x"):
        headers = {"Authorization": authorization} if authorization else {}
        answers = [
            httpx.post(f"{base}/generateTask/image-upscaler", json=valid_body(), headers=headers),
            httpx.get(f"{base}/statusTask/image-upscaler?taskId=x", headers=headers),
        ]
        for answer in answers:
            assert answer.status_code == 401, authorization
            assert answer.json() == {
                "code": 401,
                "message": "Missing or invalid API key",
                "data": None,
            }
    assert not SandboxTask.objects.exists()


def _without(field):
    body = valid_body()
    del body["input"][field]
    return body


INVALID_REQUESTS = [  # the document's "Request validation" table, row by row
    ({"request_type": "async"}, "The required parameter {{input}} is missing."),
    (valid_body(mode="text-to-image"), "Invalid mode type. Supported: image-to-image"),
    (_without("image_urls"), "The required parameter {{image_urls}} is missing."),
    (
        {"input": {"image_urls": "http://x/a.png"}},
        "The parameter {{image_urls}} must be Array type.",
    ),
    (
        {"input": {"image_urls": ["http://x/a.png", "http://x/b.png"]}},
        "The parameter {{image_urls}} must contain exactly 1 image.",
    ),
    ({"input": {"image_urls": []}}, "The parameter {{image_urls}} must contain exactly 1 image."),
    (
        {"input": {"image_urls": [42]}},
        "The parameter {{image_urls}} Array elements must be String type.",
    ),
    ({"input": {"image_urls": [""]}}, "The parameter {{image_urls}} cannot contain empty string."),
    (
        valid_body(resolution="16k"),
        "The parameter {{resolution}} must be either '2k', '4k' or '8k'.",
    ),
    (
        valid_body(output_format="gif"),
        "The parameter {{output_format}} must be either 'jpg', 'png' or 'webp'.",
    ),
    # Not in the document's table: our wording for a callback without its URL.
    (
        valid_body() | {"request_type": "callback"},
        "The required parameter {{callback_url}} is missing.",
    ),
    (
        valid_body() | {"request_type": "callback", "callback_url": 7},
        "The required parameter {{callback_url}} is missing.",
    ),
]


def test_the_sandbox_answers_invalid_requests_with_the_documented_texts(sandbox):
    with api(sandbox) as client:
        for body, message in INVALID_REQUESTS:
            answer = client.post("generateTask/image-upscaler", json=body)
            assert answer.status_code == 400, message
            assert answer.json() == {"code": 400, "message": message, "data": None}
        plain = client.post(
            "generateTask/image-upscaler",
            content=json.dumps(valid_body()),
            headers={"Content-Type": "text/plain"},
        )
        assert plain.status_code == 400
        assert plain.json()["message"] == "Content-Type must be application/json."
    assert not SandboxTask.objects.exists()


def test_the_sandbox_normalises_tier_and_format_defaults_the_mode_and_fails_an_unreadable_input(
    sandbox,
):
    body = valid_body(resolution="8K", output_format="jpeg")
    del body["request_type"]  # defaults to async
    del body["input"]["mode"]  # defaults to image-to-image
    with api(sandbox) as client:
        answer = client.post("generateTask/image-upscaler", json=body)
        assert answer.status_code == 200
        assert shape(answer.json()) == shape(doc("submit_response"))
        task_id = answer.json()["data"]["taskId"]
        status = client.get("statusTask/image-upscaler", params={"taskId": task_id}).json()

    task = SandboxTask.objects.get(public_id=task_id)
    assert (task.params["resolution"], task.params["output_format"]) == ("8k", "jpg")
    assert shape(status) == shape(doc("status_failed"))
    assert status["data"]["failCode"] == "ImageFormatIncorrect"


def test_the_sandbox_answers_404_for_an_unknown_task_and_400_without_an_id(sandbox):
    with api(sandbox) as client:
        unknown = client.get("statusTask/image-upscaler", params={"taskId": "task_nope"})
        missing = client.get("statusTask/image-upscaler")
    assert unknown.status_code == 404
    assert unknown.json() == {"code": 404, "message": "Task not found", "data": None}
    assert missing.status_code == 400
    assert missing.json()["message"] == "The required parameter {{taskId}} is missing."


def test_the_sandbox_moves_through_the_documented_states_and_shapes(sandbox, submit):
    # A running job's input link is live, so the sandbox can fetch it for a task of ours.
    sandbox.faults(SLUG, latency=60, webhook="off")
    job = submit(SLUG, resolution="2k")

    with api(sandbox) as client:
        answer = client.post("generateTask/image-upscaler", json=valid_body(input_url(job)))
        assert answer.json()["code"] == 200
        task = SandboxTask.objects.get(public_id=answer.json()["data"]["taskId"])

        def status_at(seconds_ago):
            created = timezone.now() - timezone.timedelta(seconds=seconds_ago)
            SandboxTask.objects.filter(pk=task.pk).update(created_at=created)
            return client.get("statusTask/image-upscaler", params={"taskId": task.public_id})

        pending, processing, success = status_at(0), status_at(30), status_at(61)

    assert pending.json()["data"]["state"] == "pending"
    assert shape(pending.json()) == shape(doc("status_processing"))
    assert processing.json()["data"]["state"] == "processing"
    assert shape(processing.json()) == shape(doc("status_processing"))
    data = success.json()["data"]
    assert data["state"] == "success"
    assert shape(success.json()) == shape(doc("status_success"))
    assert data["completeTime"] - data["createTime"] == data["costTime"] == 60_000
    assert abs(data["createTime"] - (time.time() - 61) * 1000) < 5_000  # Unix milliseconds
    (url,) = json.loads(data["resultJson"])["resultUrls"]
    result = httpx.get(url, timeout=10)
    assert result.status_code == 200 and result.headers["Content-Type"] == "image/jpeg"
