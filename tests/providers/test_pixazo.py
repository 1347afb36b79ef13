"""Pixazo Crystal Upscaler (doc 000): the adapter against its sandbox over real HTTP, and
the sandbox against the document.

Fixtures in tests/fixtures/pixazo: `generate_request`, `generate_response` and `errors`
are the document's own examples. The document shows no status answer and no webhook
body: `status_completed` and `webhook_*` are the shapes INDEX.md decided on (Pixazo's
generic status endpoint; the Replicate prediction of philz1337x/crystal-upscaler, whose
older version returned one URL string instead of a list)."""

import asyncio
import io
import json
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from django.core import signing
from PIL import Image

from jobs import inbound
from jobs.intake import SubmissionRefused
from jobs.models import Job, JobEvent, WebhookDelivery
from jobs.providers import Failed, Finished, ProviderError, Running, get_provider
from jobs.providers.pixazo import GENERATE_PATH, STATUS_PATH, result_url
from jobs.sandbox import engine as sandbox_engine
from jobs.sandbox import pixazo as pixazo_sandbox
from jobs.sandbox.models import SandboxTask
from tests.support import SANDBOX_KEY, timeline, wait_until

SLUG = "pixazo"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "pixazo"
KEY_HEADER = "Ocp-Apim-Subscription-Key"
State = Job.State


def documented(name: str):
    return json.loads((FIXTURES / f"{name}.json").read_text())


def assert_same_shape(actual, example, where="body"):
    """Same keys, and values of the same JSON types, as the example (recursively; null
    on either side only says the field is there)."""
    if actual is None or example is None:
        return
    if isinstance(example, dict):
        assert isinstance(actual, dict), where
        assert set(actual) == set(example), f"{where}: {sorted(actual)} != {sorted(example)}"
        for key, value in example.items():
            assert_same_shape(actual[key], value, f"{where}.{key}")
    elif isinstance(example, list):
        assert isinstance(actual, list), where
        if example and actual:
            assert_same_shape(actual[0], example[0], f"{where}[0]")
    else:
        assert type(actual) is type(example), f"{where}: {actual!r} vs {example!r}"


def api(sandbox, key=SANDBOX_KEY) -> httpx.Client:
    headers = {KEY_HEADER: key} if key else {}
    return httpx.Client(base_url=f"{sandbox.url}/sandbox/{SLUG}", headers=headers, timeout=10)


@pytest.fixture
def running_job(sandbox, submit, settings):
    """A job Pixazo is still working on: its signed input link works, for calling the
    sandbox directly."""
    settings.WEBHOOKS_ENABLED = False
    sandbox.faults(SLUG, latency=60)
    job = submit(SLUG, scale=2)
    assert job.state == State.RUNNING
    return job


# --- the adapter, end to end ---------------------------------------------------------------
def test_it_upscales_a_job_end_to_end(sandbox, submit):
    job = sandbox.settle(submit(SLUG, scale=4, image={"width": 96, "height": 80}))

    assert job.state == State.SUCCEEDED, timeline(job)
    assert job.sandbox
    assert (job.output_width, job.output_height) == (384, 320)
    assert (job.output_width, job.output_height) == (job.predicted_width, job.predicted_height)
    assert job.output_format == "PNG"
    with job.output_file.open("rb") as stream, Image.open(stream) as img:
        assert img.size == (384, 320)
    task = SandboxTask.objects.get(provider=SLUG)
    assert job.provider_task_id == task.public_id
    states = list(job.events.values_list("state", flat=True))
    assert [s for i, s in enumerate(states) if s not in states[:i]] == [
        State.QUEUED,
        State.SUBMITTING,
        State.RUNNING,
        State.FETCHING,
        State.SUCCEEDED,
    ]
    moments = list(job.events.values_list("at", flat=True))
    assert moments == sorted(moments)
    assert f"accepted the job (id {task.public_id})" in timeline(job)
    assert job.attempts == 1 and job.error_code == ""


def test_it_sends_the_documented_request(sandbox, submit, sent_requests):
    job = sandbox.settle(submit(SLUG, scale=4))
    assert job.state == State.SUCCEEDED, timeline(job)

    posts = [r for r in sent_requests if r.method == "POST"]
    assert len(posts) == 1
    post = posts[0]
    assert post.url == f"{sandbox.url}/sandbox/{SLUG}{GENERATE_PATH}"
    assert post.url.path.endswith("/upscaler/v1/crystal-upscaler/generate")
    assert post.headers["Content-Type"] == "application/json"
    assert post.headers["Cache-Control"] == "no-cache"
    assert post.headers[KEY_HEADER] == SANDBOX_KEY
    assert "Authorization" not in post.headers

    body = json.loads(post.content)
    example = documented("generate_request")
    assert_same_shape({k: body[k] for k in example}, example)
    assert set(body) == {"image", "scale_factor", "webhook", "webhook_events_filter"}
    assert type(body["scale_factor"]) is int and body["scale_factor"] == 4
    # The image is our signed, expiring link to this job's input.
    assert body["image"].startswith(f"{sandbox.url}/inputs/")
    token = body["image"].rstrip("/").rsplit("/", 1)[-1]
    assert signing.loads(token, salt=inbound.INPUT_SALT) == {"j": job.pk, "p": SLUG}
    assert body["webhook"] == get_provider(SLUG).webhook_url(job)
    assert body["webhook_events_filter"] == ["completed"]

    polls = [r for r in sent_requests if r.method == "GET" and "/v2/requests/status/" in r.url.path]
    assert polls, "the job was confirmed by polling the status endpoint"
    for poll in polls:
        status_path = STATUS_PATH.format(id=job.provider_task_id)
        assert poll.url == f"{sandbox.url}/sandbox/{SLUG}{status_path}"
        assert poll.headers[KEY_HEADER] == SANDBOX_KEY
        assert poll.headers["Cache-Control"] == "no-cache"


def test_it_leaves_out_the_webhook_when_webhooks_are_off(sandbox, submit, sent_requests, settings):
    settings.WEBHOOKS_ENABLED = False
    job = submit(SLUG, scale=2)

    assert job.state == State.RUNNING
    (post,) = [r for r in sent_requests if r.method == "POST"]
    assert set(json.loads(post.content)) == {"image", "scale_factor"}
    assert SandboxTask.objects.get(provider=SLUG).webhook_url == ""


@pytest.mark.parametrize(
    "status, code, words",
    [
        (400, "invalid_request", "Invalid request parameters"),
        (402, "no_credits", "top it up"),
        (403, "access_denied", "Access denied for this operation"),
        (404, "not_found", "Endpoint not found"),
    ],
)
def test_it_fails_on_a_final_error_with_a_plain_message(sandbox, submit, status, code, words):
    sandbox.faults(SLUG, error_status=status, error_count=1, error_on="submit")
    job = sandbox.settle(submit(SLUG))

    assert job.state == State.FAILED
    assert job.error_code == code
    assert "Pixazo" in job.error_message and words in job.error_message
    assert job.attempts == 1  # a final error is never resent
    assert not SandboxTask.objects.filter(provider=SLUG).exists()


def test_it_reports_a_wrong_key_without_revealing_it(sandbox, submit, settings):
    wrong = "wrong-pixazo-key-51f0c9"
    settings.PROVIDER_SETTINGS = {
        **settings.PROVIDER_SETTINGS,
        SLUG: {"api_key": wrong, "base_url": sandbox.url + f"/sandbox/{SLUG}"},
    }
    job = sandbox.settle(submit(SLUG))

    assert job.state == State.FAILED
    assert job.error_code == "invalid_auth"
    assert "PIXAZO_API_KEY" in job.error_message
    assert "Invalid or missing authentication" in job.error_message
    assert wrong not in job.error_message
    assert not JobEvent.objects.filter(detail__contains=wrong).exists()
    assert job.attempts == 1


def test_it_retries_a_rate_limited_submit_after_retry_after(sandbox, submit):
    sandbox.faults(SLUG, error_status=429, error_count=1, error_on="submit", retry_after=1)
    job = submit(SLUG)
    assert job.state == State.QUEUED and job.next_poll_at is not None

    job = sandbox.settle(job)
    assert job.state == State.SUCCEEDED, timeline(job)
    assert job.attempts == 2
    assert "Rate limit exceeded, please retry later" in timeline(job)
    assert "Trying again" in timeline(job)
    assert SandboxTask.objects.filter(provider=SLUG).count() == 1


def test_it_retries_a_server_error_on_submit(sandbox, submit):
    sandbox.faults(SLUG, error_status=500, error_count=1, error_on="submit")
    job = sandbox.settle(submit(SLUG))

    assert job.state == State.SUCCEEDED, timeline(job)
    assert job.attempts == 2
    assert "server error (500): An unexpected error occurred" in timeline(job)


def test_it_retries_a_server_error_while_polling(sandbox, submit, settings):
    settings.WEBHOOKS_ENABLED = False  # only the tracker polls
    sandbox.faults(SLUG, error_status=500, error_count=1, error_on="poll")
    job = sandbox.settle(submit(SLUG))

    assert job.state == State.SUCCEEDED, timeline(job)
    assert job.attempts == 1
    assert "Checking on the job failed" in timeline(job)
    assert "An unexpected error occurred, please try again later" in timeline(job)


def test_it_does_not_resend_a_submit_that_timed_out(sandbox, submit, settings):
    settings.PROVIDER_TIMEOUT = 0.5
    settings.WEBHOOKS_ENABLED = False
    sandbox.faults(SLUG, slow_seconds=1.5)
    job = sandbox.settle(submit(SLUG))

    assert job.state == State.FAILED
    assert job.error_code == "submit_unknown"
    assert "not sent again" in job.error_message
    assert job.attempts == 1
    # Pixazo did take it: its prediction exists, and there is only that one.
    wait_until(lambda: SandboxTask.objects.filter(provider=SLUG).exists())
    assert SandboxTask.objects.filter(provider=SLUG).count() == 1
    assert job.provider_task_id == ""


@pytest.mark.parametrize(
    "failure, code, words",
    [
        ("ERROR", "error", "ERROR: The model could not process this image."),
        ("CUDA out of memory", "failed", "FAILED: CUDA out of memory"),
    ],
)
def test_it_fails_a_job_whose_prediction_failed(sandbox, submit, failure, code, words):
    sandbox.faults(SLUG, task_failure=failure)
    job = sandbox.settle(submit(SLUG))

    assert job.state == State.FAILED
    assert job.error_code == code
    assert job.error_message.startswith("Pixazo Crystal could not upscale this image")
    assert words in job.error_message


# --- webhooks --------------------------------------------------------------------------------
def test_it_finishes_on_the_webhook_without_waiting_for_a_poll(sandbox, submit):
    sandbox.faults(SLUG, latency=0.3)
    job = submit(SLUG)
    assert job.state == State.RUNNING

    # No tracker runs here: only the webhook can move the job on.
    wait_until(lambda: Job.objects.get(pk=job.pk).state in Job.FINAL_STATES)
    job.refresh_from_db()
    assert job.state == State.SUCCEEDED, timeline(job)
    details = list(job.events.values_list("detail", flat=True))
    hint = details.index(
        "Webhook from Pixazo Crystal: says: succeeded. Confirming with Pixazo Crystal."
    )
    assert hint < details.index("Pixazo Crystal finished the job.")
    (delivery,) = WebhookDelivery.objects.filter(job=job)
    assert delivery.hint == "says: succeeded"


def test_it_counts_a_duplicate_webhook_once(sandbox, submit, monkeypatch):
    delivered = []
    real_post = sandbox_engine._post

    def post_and_count(url, body, headers, retries):
        real_post(url, body, headers, retries)
        delivered.append(body)

    monkeypatch.setattr(sandbox_engine, "_post", post_and_count)
    sandbox.faults(SLUG, latency=0.3, webhook="duplicate")
    job = submit(SLUG)

    wait_until(lambda: len(delivered) == 2)  # both copies have been answered
    job.refresh_from_db()
    assert delivered[0] == delivered[1]
    assert job.state == State.SUCCEEDED, timeline(job)
    assert WebhookDelivery.objects.filter(job=job).count() == 1
    assert job.events.filter(detail__startswith="Webhook from").count() == 1
    assert job.events.filter(state=State.FETCHING).count() == 1
    assert job.events.filter(state=State.SUCCEEDED).count() == 1


def test_it_ignores_a_webhook_with_a_forged_token(running_job, client):
    job = running_job
    body = json.dumps(documented("webhook_succeeded"))
    response = client.post(
        f"/hooks/{SLUG}/{job.pk}/not-the-token/", body, content_type="application/json"
    )

    assert response.status_code == 404
    job.refresh_from_db()
    assert job.state == State.RUNNING
    assert not WebhookDelivery.objects.exists()
    assert "Webhook" not in timeline(job)


def test_it_ignores_a_stale_webhook_after_success(sandbox, submit, client):
    job = sandbox.settle(submit(SLUG))
    assert job.state == State.SUCCEEDED
    events_before = job.events.count()
    stale = {
        **documented("webhook_succeeded"),
        "id": job.provider_task_id,
        "status": "processing",
        "output": None,
        "completed_at": None,
    }
    response = client.post(
        f"/hooks/{SLUG}/{job.pk}/{job.webhook_token}/",
        json.dumps(stale),
        content_type="application/json",
    )

    assert response.status_code == 200
    refreshed = Job.objects.get(pk=job.pk)
    assert refreshed.state == State.SUCCEEDED
    assert refreshed.output_file.name == job.output_file.name
    assert refreshed.finished_at == job.finished_at
    assert refreshed.events.count() == events_before


@pytest.mark.parametrize(
    "name, hint",
    [
        ("webhook_succeeded", "says: succeeded"),
        ("webhook_succeeded_single_url_version", "says: succeeded"),
        ("webhook_failed", "says: failed (CUDA out of memory)"),
    ],
)
def test_it_summarises_what_a_webhook_claims(name, hint):
    assert get_provider(SLUG).webhook_hint(documented(name)) == hint


# Bodies that are not JSON objects never get here: the hook view answers them 400.
@pytest.mark.parametrize("body", [{}, {"error": "no status"}])
def test_it_tolerates_a_garbled_webhook(body):
    assert get_provider(SLUG).webhook_hint(body) == "unreadable body"


def test_it_reads_the_result_link_in_every_shape_seen():
    link = "https://replicate.delivery/x/output.png"
    assert result_url({"media_url": [link]}) == link
    assert result_url({"media_url": link}) == link
    assert result_url([link]) == link
    assert result_url(link) == link
    assert result_url(None) == result_url([]) == result_url({}) == ""


# --- answers the sandbox does not give (the polling contract is an assumption) ----------------
FAKE_JOB = SimpleNamespace(
    pk=1, provider=SLUG, options={"scale": 2}, webhook_token="t", provider_task_id="abc"
)


def answer_with(status: int, body) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(status, json=body))
    )


async def call(method, status: int, body):
    async with answer_with(status, body) as client:
        return await method(FAKE_JOB, client)


@pytest.mark.parametrize(
    "body, expected",
    [
        ({"status": "QUEUED"}, Running("abc")),
        ({"status": "SOMETHING_NEW"}, Running("abc")),
        (
            {"status": "succeeded", "output": "https://r.example/o.png"},
            Finished(url="https://r.example/o.png", task_id="abc"),
        ),
        (
            {"status": "COMPLETED", "output": None},
            Failed("no_result", "Pixazo Crystal reported the job done but gave no result link."),
        ),
        (
            {"status": "canceled", "error": None},
            Failed(
                "canceled",
                "Pixazo Crystal could not upscale this image (CANCELED: no reason given).",
            ),
        ),
    ],
)
def test_it_reads_every_status_word(settings, body, expected):
    settings.PROVIDER_SETTINGS = {SLUG: {"api_key": "", "base_url": ""}}
    assert asyncio.run(call(get_provider(SLUG).poll, 200, body)) == expected


def test_it_never_resends_a_submit_answered_without_an_id(settings):
    settings.PROVIDER_SETTINGS = {SLUG: {"api_key": "", "base_url": ""}}
    with pytest.raises(ProviderError) as raised:
        asyncio.run(call(get_provider(SLUG).submit, 200, {"success": False, "error": "busy"}))

    assert raised.value.code == "bad_response" and "busy" in raised.value.message
    assert raised.value.retryable and raised.value.maybe_received  # -> submit_unknown


def test_it_understands_the_gateways_own_error_body(settings):
    # Azure API Management, in front of Pixazo, words some refusals itself.
    settings.PROVIDER_SETTINGS = {SLUG: {"api_key": "real-key-123", "base_url": ""}}
    apim = {"statusCode": 401, "message": "Access denied due to invalid subscription key."}
    with pytest.raises(ProviderError) as raised:
        asyncio.run(call(get_provider(SLUG).poll, 401, apim))

    assert raised.value.code == "invalid_auth" and not raised.value.retryable
    assert "Access denied due to invalid subscription key." in raised.value.message
    assert "real-key-123" not in raised.value.message


# --- results and limits ------------------------------------------------------------------------
def test_it_fails_with_result_expired_when_the_links_are_dead(sandbox, submit, settings):
    # The sandbox hands out a fresh link on every status call, so the portal asks once
    # more when a link has expired; with the fault on, that one is dead too.
    settings.WEBHOOKS_ENABLED = False
    sandbox.faults(SLUG, expired_results=True)
    job = sandbox.settle(submit(SLUG))

    assert job.state == State.FAILED
    assert job.error_code == "result_expired"
    assert "expired" in job.error_message and "Pixazo Crystal" in job.error_message
    assert not job.output_file


def test_it_refuses_an_unsupported_scale_before_sending(sandbox, submit, sent_requests):
    with pytest.raises(SubmissionRefused) as refused:
        submit(SLUG, scale=3)

    assert "Allowed: 2, 4, 6, 8" in str(refused.value)
    assert not Job.objects.exists()
    assert not SandboxTask.objects.exists()
    assert sent_requests == []


# --- the sandbox against the document ---------------------------------------------------------
def test_the_sandbox_answers_like_the_document(sandbox, running_job):
    image = inbound.input_url(running_job)
    with api(sandbox) as pixazo:
        started = pixazo.post(GENERATE_PATH, json={"image": image, "scale_factor": 4})
        assert started.status_code == 200
        answer = started.json()
        assert_same_shape(answer, documented("generate_response"))
        assert answer["success"] is True and answer["status"] == "starting"
        assert answer["model"] == "philz1337x/crystal-upscaler"
        assert answer["input"] == {"image": image, "scale_factor": 4}

        pending = pixazo.get(STATUS_PATH.format(id=answer["id"])).json()
        assert_same_shape(pending, documented("status_completed"))
        assert pending["status"] in ("QUEUED", "PROCESSING") and pending["output"] is None

        sandbox.faults(SLUG, latency=0)
        done_id = pixazo.post(GENERATE_PATH, json={"image": image}).json()["id"]
        done = pixazo.get(STATUS_PATH.format(id=done_id)).json()
        assert_same_shape(done, documented("status_completed"))
        assert done["status"] == "COMPLETED"
        result = httpx.get(done["output"]["media_url"][0])
        with Image.open(io.BytesIO(result.content)) as img:
            # scale_factor defaults to 2; the result is PNG.
            assert (img.format, img.size) == ("PNG", (192, 160))

    task = SandboxTask.objects.get(public_id=done_id)
    assert_same_shape(pixazo_sandbox.prediction(task), documented("webhook_succeeded"))


def test_the_sandbox_wants_the_subscription_key(sandbox):
    answers = []
    for key in ("", "not-the-key"):
        with api(sandbox, key=key) as pixazo:
            answers.append(pixazo.post(GENERATE_PATH, json=documented("generate_request")))
            answers.append(pixazo.get(STATUS_PATH.format(id="abc123")))

    for response in answers:
        assert response.status_code == 401
        assert response.json() == documented("errors")["401"]


INVALID_BODIES = [
    {},
    {"scale_factor": 4},
    {"image": "portrait.jpg"},
    {"image": "https://example.com/portrait.jpg", "scale_factor": 3},
    {"image": "https://example.com/portrait.jpg", "scale_factor": "4"},
    {"image": "https://example.com/portrait.jpg", "scale_factor": 4.5},
    {"image": "https://example.com/portrait.jpg", "webhook": 12},
    {"image": "https://example.com/portrait.jpg", "webhook_events_filter": ["start"]},
    {"image": "https://example.com/portrait.jpg", "webhook_events_filter": "completed"},
    [],
]


def test_the_sandbox_refuses_invalid_parameters_with_the_documented_text(sandbox):
    with api(sandbox) as pixazo:
        answers = [pixazo.post(GENERATE_PATH, json=body) for body in INVALID_BODIES]
        answers.append(pixazo.post(GENERATE_PATH, content=b"{not json"))

    for body, response in zip(INVALID_BODIES + ["{not json"], answers, strict=True):
        assert response.status_code == 400, body
        assert response.json() == documented("errors")["400"], body
    assert not SandboxTask.objects.exists()


def test_the_sandbox_refuses_an_image_it_cannot_fetch(sandbox):
    with api(sandbox) as pixazo:
        response = pixazo.post(GENERATE_PATH, json={"image": f"{sandbox.url}/inputs/nothing/"})

    assert response.status_code == 400
    assert response.json()["error"].startswith("Invalid image")
    assert not SandboxTask.objects.exists()


def test_the_sandbox_answers_404_for_unknown_predictions_and_paths(sandbox):
    with api(sandbox) as pixazo:
        answers = [
            pixazo.get(STATUS_PATH.format(id="no-such-prediction")),
            pixazo.get("/upscaler/v1/crystal-upscaler/nothing"),
            pixazo.get(GENERATE_PATH),
        ]

    for response in answers:
        assert response.status_code == 404
        assert response.json() == documented("errors")["404"]


def test_the_sandbox_injects_errors_with_the_documented_bodies(sandbox):
    for status in (429, 500):
        sandbox.faults(SLUG, error_status=status, error_count=1, error_on="poll", retry_after=7)
        with api(sandbox) as pixazo:
            response = pixazo.get(STATUS_PATH.format(id="abc123"))
            after = pixazo.get(STATUS_PATH.format(id="abc123"))

        assert response.status_code == status
        assert response.json() == documented("errors")[str(status)]
        assert response.headers["Retry-After"] == "7"
        assert after.status_code == 404  # the fault is used up
