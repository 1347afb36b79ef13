"""Ximilar's adapter against its sandbox, over real HTTP.

The fixtures in tests/fixtures/ximilar/ are the examples of doc 003, as printed; only
the webhook example's WIDTH/HEIGHT placeholders (not JSON) became numbers.
"""

import asyncio
import base64
import io
import json
import uuid
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from django.utils import timezone
from PIL import Image

from jobs import intake, pipeline
from jobs.errors import ProviderError
from jobs.models import Job, WebhookDelivery
from jobs.providers import get_provider
from jobs.providers import ximilar as adapter
from jobs.providers.ximilar import MARKER_FIELD, marker
from jobs.sandbox import engine
from jobs.sandbox import ximilar as sandbox_module
from jobs.sandbox.models import SandboxTask
from tests.images import image_bytes
from tests.support import SANDBOX_KEY, wait_until

SLUG = "ximilar"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ximilar"
AUTH = {"Authorization": f"Token {SANDBOX_KEY}"}


def doc(name):
    return json.loads((FIXTURES / f"{name}.json").read_text())


def same_shape(documented, got, absent=(), where="$"):
    """`got` has the documented keys (bar `absent` ones), no others, with the same types."""
    if isinstance(documented, dict):
        assert isinstance(got, dict), where
        expected = set(documented) - set(absent)
        assert set(got) == expected, f"{where}: {sorted(got)} != {sorted(expected)}"
        for key in expected:
            same_shape(documented[key], got[key], absent, f"{where}.{key}")
    elif isinstance(documented, list):
        assert isinstance(got, list) and len(got) == len(documented), where
        for i, (d, g) in enumerate(zip(documented, got, strict=True)):
            same_shape(d, g, absent, f"{where}[{i}]")
    else:
        assert type(got) is type(documented), f"{where}: {got!r}"


def quiet(sandbox, **faults):
    """Faults for tests that drive the job by polling: no webhook thread racing them."""
    return sandbox.faults(SLUG, webhook="off", **faults)


# Not tests.support's timeline()/states(): these keep (state, detail) pairs and every
# repeated state, which the assertions below index and count.
def timeline(job):
    return list(job.events.values_list("state", "detail"))


def states(job):
    return [state for state, _ in timeline(job)]


def api_url(sandbox, tail=""):
    return f"{sandbox.url}/sandbox/ximilar/account/v2/request{tail}"


@pytest.fixture
def deliveries(monkeypatch):
    """Webhook bodies the sandbox posted, recorded once each post has been answered."""
    posted = []
    real_post = engine._post

    def post(url, body, headers, retries):
        real_post(url, body, headers, retries)
        posted.append(body)

    monkeypatch.setattr(engine, "_post", post)
    return posted


# --- the happy path ---------------------------------------------------------------------
def test_it_upscales_a_photo_end_to_end(sandbox, submit):
    quiet(sandbox)
    job = sandbox.settle(submit(SLUG, scale=4, model_type="gan"))
    assert job.state == Job.State.SUCCEEDED, timeline(job)
    assert (job.output_width, job.output_height) == (96 * 4, 80 * 4)
    assert (job.output_width, job.output_height) == (job.predicted_width, job.predicted_height)
    assert job.output_format == "JPEG"  # an opaque PNG comes back as JPEG (doc)
    assert job.sandbox and job.attempts == 1 and job.error_code == ""
    assert uuid.UUID(job.provider_task_id)
    assert states(job) == ["queued", "submitting", "running", "fetching", "succeeded"]
    assert "Ximilar accepted the job" in timeline(job)[2][1]
    assert SandboxTask.objects.filter(provider=SLUG).count() == 1


def test_it_sends_the_documented_request(sandbox, submit, sent_requests):
    quiet(sandbox)
    data = image_bytes(fmt="JPEG")
    job = submit(
        SLUG,
        name="photo.jpg",
        image={"data": data, "content_type": "image/jpeg"},
        scale=8,
        mode="high_fidelity",
        model_type="gan",
        output_format="png",
    )
    job = sandbox.settle(job)
    assert job.state == Job.State.SUCCEEDED, timeline(job)
    assert job.output_format == "PNG"  # the chosen format, not the input's JPEG
    assert (job.output_width, job.output_height) == (96 * 8, 80 * 8)

    post = sent_requests[0]
    assert post.method == "POST"
    assert str(post.url) == api_url(sandbox)
    assert post.headers["Authorization"] == f"Token {SANDBOX_KEY}"
    assert post.headers["Content-Type"] == "application/json"
    body = json.loads(post.content)
    fields = {"type", "endpoint", "records", "mode", "model_type", "image_format", "webhook"}
    assert set(body) == fields
    assert body["type"] == "upscaler"
    assert body["endpoint"] == "upscale_8x"
    assert body["mode"] == "high_fidelity"
    assert body["model_type"] == "gan"
    assert body["image_format"] == "png"
    assert isinstance(body["records"], list) and len(body["records"]) == 1
    # Beside the image, our mark: how we find the request again if a worker dies before
    # saving its id (jobs.recovery).
    assert set(body["records"][0]) == {"_base64", MARKER_FIELD}
    assert body["records"][0][MARKER_FIELD] == marker(job)
    assert base64.b64decode(body["records"][0]["_base64"]) == data
    hook = f"{sandbox.url}/hooks/ximilar/{job.pk}/{job.webhook_token}/"
    assert body["webhook"] == {"endpoint": hook, "headers": {}}
    documented = doc("submit_request")
    assert set(documented) <= set(body)
    assert set(documented["webhook"]) == set(body["webhook"])
    polls = [r for r in sent_requests if r.method == "GET" and "/account/v2/request/" in str(r.url)]
    assert polls and all(str(r.url) == api_url(sandbox, f"/{job.provider_task_id}") for r in polls)
    assert all(r.headers["Authorization"] == f"Token {SANDBOX_KEY}" for r in polls)


@pytest.mark.parametrize(
    ("image", "fmt", "expected"),
    [
        ({"mode": "RGBA"}, "auto", "PNG"),  # alpha: PNG (doc)
        ({"fmt": "WEBP"}, "auto", "JPEG"),  # otherwise JPEG, whatever came in (doc)
        ({}, "webp", "WEBP"),
    ],
)
def test_it_gets_the_format_ximilar_documents(sandbox, submit, sent_requests, image, fmt, expected):
    quiet(sandbox)
    job = sandbox.settle(submit(SLUG, image=image, output_format=fmt))
    assert job.state == Job.State.SUCCEEDED, timeline(job)
    assert job.output_format == expected
    body = json.loads(sent_requests[0].content)
    assert body.get("image_format") == (None if fmt == "auto" else fmt)
    assert "image_quality" not in body and "tune_colors" not in body


def test_it_sends_no_webhook_when_webhooks_are_off(sandbox, submit, sent_requests, settings):
    settings.WEBHOOKS_ENABLED = False
    quiet(sandbox)
    job = sandbox.settle(submit(SLUG))
    assert job.state == Job.State.SUCCEEDED
    assert "webhook" not in json.loads(sent_requests[0].content)


# --- errors ---------------------------------------------------------------------------------
def test_it_fails_plainly_when_ximilar_refuses_the_token(sandbox, submit, settings):
    key = "wrong-key-0123456789"
    settings.PROVIDER_SETTINGS = {
        **settings.PROVIDER_SETTINGS,
        SLUG: {"api_key": key, "base_url": sandbox.url + "/sandbox/ximilar"},
    }
    quiet(sandbox)
    job = sandbox.settle(submit(SLUG))
    assert job.state == Job.State.FAILED
    assert not job.sandbox
    assert job.error_code == "authentication_failed"
    assert job.error_message == (
        "Ximilar refused the API token (Invalid token.). An admin needs to check XIMILAR_API_TOKEN."
    )
    assert job.attempts == 1  # final: not retried
    assert key not in job.error_message
    assert all(key not in detail for _, detail in timeline(job))
    assert SandboxTask.objects.filter(provider=SLUG).count() == 0


def test_it_fails_a_refused_request_without_retrying(sandbox, submit):
    quiet(sandbox, error_status=400, error_count=1, error_on="submit")
    job = sandbox.settle(submit(SLUG))
    assert job.state == Job.State.FAILED
    assert (job.error_code, job.attempts) == ("invalid", 1)
    assert job.error_message == "Ximilar refused the request (Malformed request.)."


def test_it_fails_when_ximilar_no_longer_knows_the_job(sandbox, submit):
    quiet(sandbox, error_status=404, error_count=1, error_on="poll")
    job = sandbox.settle(submit(SLUG))
    assert job.state == Job.State.FAILED
    assert job.error_code == "not_found"
    assert job.error_message == "Ximilar no longer knows this job (Not found.)."


@pytest.mark.parametrize(
    ("status", "said"),
    [
        (429, "Ximilar is busy (rate limited): Request was throttled. Expected available in 1"),
        (500, "Ximilar had a server error (500): A server error occurred."),
    ],
)
def test_it_retries_a_busy_submit_and_then_succeeds(sandbox, submit, status, said):
    quiet(sandbox, error_status=status, error_count=1, error_on="submit")
    job = sandbox.settle(submit(SLUG))
    assert job.state == Job.State.SUCCEEDED, timeline(job)
    assert job.attempts == 2
    retry = next(detail for state, detail in timeline(job) if "Trying again" in detail)
    assert retry.startswith(said)
    assert "(attempt 2 of" in retry
    assert states(job)[:4] == ["queued", "submitting", "queued", "submitting"]
    assert SandboxTask.objects.filter(provider=SLUG).count() == 1


def test_it_keeps_polling_through_a_server_error(sandbox, submit):
    quiet(sandbox, error_status=500, error_count=1, error_on="poll")
    job = sandbox.settle(submit(SLUG))
    assert job.state == Job.State.SUCCEEDED, timeline(job)
    assert any(
        detail.startswith("Checking on the job failed: Ximilar had a server error (500)")
        for _, detail in timeline(job)
    )


def test_it_does_not_resend_a_submit_that_timed_out(sandbox, submit, settings):
    settings.PROVIDER_TIMEOUT = 0.5
    quiet(sandbox, slow_seconds=0.9)
    job = sandbox.settle(submit(SLUG))
    assert job.state == Job.State.FAILED
    assert job.error_code == "submit_unknown"
    assert "did not answer in time" in job.error_message
    assert "not sent again" in job.error_message
    assert job.attempts == 1
    # The slow sandbox still took the job, once.
    wait_until(lambda: SandboxTask.objects.filter(provider=SLUG).exists())
    assert SandboxTask.objects.filter(provider=SLUG).count() == 1


@pytest.mark.parametrize(
    ("failure", "code"),
    [("ERROR", "error"), ("FAILED", "failed"), ("400", "record_error")],
)
def test_it_reports_a_failed_task(sandbox, submit, failure, code):
    quiet(sandbox, task_failure=failure)
    job = sandbox.settle(submit(SLUG))
    assert job.state == Job.State.FAILED
    assert job.error_code == code
    assert job.error_message == (
        "Ximilar could not upscale this image (Error while processing the image)."
    )


def test_it_fails_when_the_result_link_has_expired(sandbox, submit):
    # Each poll hands out a fresh link, but with this fault every link is born expired.
    quiet(sandbox, expired_results=True)
    job = sandbox.settle(submit(SLUG))
    assert job.state == Job.State.FAILED
    assert job.error_code == "result_expired"
    assert "result link from Ximilar" in job.error_message and "expired" in job.error_message


def test_it_refuses_bad_input_before_sending(sandbox, submit):
    with pytest.raises(intake.SubmissionRefused) as refused:
        submit(SLUG, scale=3)
    assert "Scale 3 is not offered. Allowed: 2, 4, 8." in str(refused.value)

    big = io.BytesIO()
    Image.new("RGB", (2000, 1600)).save(big, "PNG")
    with pytest.raises(intake.SubmissionRefused) as refused:
        submit(SLUG, name="big.png", image={"data": big.getvalue()}, scale=8)
    assert "16000x12800 (205 MP)" in str(refused.value)
    assert not Job.objects.exists()
    assert not SandboxTask.objects.exists()


def test_it_words_ximilar_errors_for_people():
    from jobs.providers import get_provider

    provider = get_provider(SLUG)
    request = httpx.Request("GET", "https://api.ximilar.com/account/v2/request/x")

    def error(status, body=None, submitting=False, headers=None):
        kwargs = {"json": body} if body is not None else {"content": b"<html>oops</html>"}
        answer = httpx.Response(status, request=request, headers=headers or {}, **kwargs)
        return provider._error(answer, submitting=submitting)

    missing = error(401, {"detail": "Authentication credentials were not provided."})
    assert (missing.code, missing.retryable) == ("not_authenticated", False)
    assert "An admin needs to check XIMILAR_API_TOKEN." in missing.message
    denied = error(403, {"detail": "You do not have permission to perform this action."})
    assert denied.code == "permission_denied"
    assert "credits and permissions" in denied.message
    invalid = error(400, {"endpoint": ['"upscale_3x" is not a valid choice.'], "mode": ["x"]})
    assert invalid.message == (
        'Ximilar refused the request (endpoint: "upscale_3x" is not a valid choice.; mode: x).'
    )
    lost = error(404, {"detail": "Not found."}, submitting=True)
    assert "XIMILAR_BASE_URL" in lost.message
    proxy = error(502, headers={"Retry-After": "3"})
    assert (proxy.code, proxy.retryable, proxy.retry_after) == ("server_error", True, 3.0)
    assert proxy.message == "Ximilar had a server error (502)."


# --- webhooks -------------------------------------------------------------------------------
def test_it_finishes_on_the_webhook_without_waiting_for_a_poll(sandbox, submit, deliveries):
    sandbox.faults(SLUG, latency=0.5)
    job = submit(SLUG)
    assert job.state == Job.State.RUNNING
    # No tracker runs here: only the webhook can move the job on.
    wait_until(lambda: Job.objects.get(pk=job.pk).state in Job.FINAL_STATES)
    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED, timeline(job)
    assert "Webhook from Ximilar: says: DONE. Confirming with Ximilar." in [
        detail for _, detail in timeline(job)
    ]
    wait_until(lambda: len(deliveries) == 1)
    # The record's own fields come back with it: our mark, which the doc's example lacks.
    record = deliveries[0]["response"]["records"][0]
    assert record.pop(MARKER_FIELD) == marker(job)
    same_shape(doc("webhook"), deliveries[0], absent={"_url"})  # we send _base64, not _url
    assert deliveries[0]["id"] == job.provider_task_id


def test_it_acts_once_on_a_duplicate_webhook(sandbox, submit, deliveries):
    sandbox.faults(SLUG, latency=0.5, webhook="duplicate")
    job = submit(SLUG)
    wait_until(lambda: len(deliveries) == 2)
    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED, timeline(job)
    assert WebhookDelivery.objects.filter(job=job).count() == 1
    assert states(job).count("succeeded") == 1
    assert sum("Webhook from" in detail for _, detail in timeline(job)) == 1


def test_it_ignores_a_forged_webhook(sandbox, submit):
    quiet(sandbox, latency=30)
    job = submit(SLUG)
    assert job.state == Job.State.RUNNING
    before = timeline(job)
    body = {**doc("webhook"), "id": job.provider_task_id}
    answer = httpx.post(f"{sandbox.url}/hooks/ximilar/{job.pk}/forged-token/", json=body)
    assert answer.status_code == 404
    job.refresh_from_db()
    assert job.state == Job.State.RUNNING
    assert timeline(job) == before
    assert not WebhookDelivery.objects.exists()


def test_it_ignores_a_stale_webhook_after_success(sandbox, submit):
    quiet(sandbox)
    job = sandbox.settle(submit(SLUG))
    assert job.state == Job.State.SUCCEEDED
    before = (timeline(job), job.output_file.name, job.finished_at)
    stale = {"status": "PROCESSING", "id": job.provider_task_id, "type": "upscaler"}
    hook = f"{sandbox.url}/hooks/ximilar/{job.pk}/{job.webhook_token}/"
    assert httpx.post(hook, json=stale).status_code == 200
    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED
    assert (timeline(job), job.output_file.name, job.finished_at) == before
    assert WebhookDelivery.objects.get(job=job).hint == "says: PROCESSING"


def test_it_summarises_webhook_bodies_for_the_timeline():
    from jobs.providers import get_provider

    provider = get_provider(SLUG)
    assert provider.webhook_hint(doc("webhook")) == "says: DONE"
    assert provider.webhook_hint({}) == "unreadable body"
    assert provider.webhook_hint({"status": 3}) == "unreadable body"


# --- the sandbox itself ---------------------------------------------------------------------
TOKEN_CASES = [
    (None, "Authentication credentials were not provided."),
    (f"Bearer {SANDBOX_KEY}", "Authentication credentials were not provided."),
    ("Token", "Invalid token header. No credentials provided."),
    ("Token sandbox key", "Invalid token header. Token string should not contain spaces."),
    ("Token wrong", "Invalid token."),
]


def test_the_sandbox_refuses_a_missing_or_wrong_token_like_drf(sandbox):
    for header, detail in TOKEN_CASES:
        headers = {"Authorization": header} if header else {}
        for answer in (
            httpx.post(api_url(sandbox), json={}, headers=headers),
            httpx.get(api_url(sandbox, f"/{uuid.uuid4()}"), headers=headers),
        ):
            assert answer.status_code == 401, header
            assert answer.json() == {"detail": detail}, header
            assert answer.headers["WWW-Authenticate"] == "Token"


def _b64(data):
    return base64.b64encode(data).decode()


INVALID_BODIES = [
    (
        {},
        {
            "type": ["This field is required."],
            "endpoint": ["This field is required."],
            "records": ["This field is required."],
        },
    ),
    (
        {"type": "tagging", "endpoint": "upscale_3x", "records": [{"_url": "x"}]},
        {
            "type": ['"tagging" is not a valid choice.'],
            "endpoint": ['"upscale_3x" is not a valid choice.'],
        },
    ),
    (
        {"type": "upscaler", "endpoint": "upscale_2x", "records": [{"_url": "a"}] * 2},
        {"records": ["Only one record is allowed."]},
    ),
    (
        {"type": "upscaler", "endpoint": "upscale_2x", "records": [{}]},
        {"records": ["The record needs _url or _base64."]},
    ),
    (
        {"type": "upscaler", "endpoint": "upscale_2x", "records": {"_url": "x"}},
        {"records": ['Expected a list of items but got type "dict".']},
    ),
    (
        {
            "type": "upscaler",
            "endpoint": "upscale_2x",
            "records": [{"_base64": "AAAA"}],
            "mode": "sharp",
            "model_type": "diffusion",
            "image_format": "gif",
            "image_quality": 101,
            "tune_colors": "yes",
            "webhook": {"headers": {}},
        },
        {
            "mode": ['"sharp" is not a valid choice.'],
            "model_type": ['"diffusion" is not a valid choice.'],
            "image_format": ['"gif" is not a valid choice.'],
            "image_quality": ["Ensure this value is less than or equal to 100."],
            "tune_colors": ["Must be a valid boolean."],
            "webhook": {"endpoint": ["This field is required."]},
        },
    ),
    (
        {"type": "upscaler", "endpoint": "upscale_2x", "records": [{"_base64": "%%%"}]},
        {"records": ["Could not read the image: _base64 is not valid base64"]},
    ),
    (
        {"type": "upscaler", "endpoint": "upscale_2x", "records": [{"_base64": _b64(b"hi")}]},
        {
            "records": [
                "Could not read the image: This is not an image we can read. "
                "Upload a JPEG, PNG or WebP file."
            ]
        },
    ),
]


def test_the_sandbox_validates_requests_with_drf_bodies(sandbox):
    for body, errors in INVALID_BODIES:
        answer = httpx.post(api_url(sandbox), json=body, headers=AUTH)
        assert answer.status_code == 400
        assert answer.json() == errors
    assert not SandboxTask.objects.exists()


def test_the_sandbox_refuses_a_body_that_is_not_json(sandbox):
    answer = httpx.post(api_url(sandbox), content=b"{nope", headers=AUTH)
    assert answer.status_code == 400
    assert answer.json()["detail"].startswith("JSON parse error - ")
    answer = httpx.post(api_url(sandbox), json=[1], headers=AUTH)
    assert answer.json() == {
        "non_field_errors": ["Invalid data. Expected a dictionary, but got list."]
    }


def test_the_sandbox_answers_404_for_an_unknown_request(sandbox):
    for tail in (f"/{uuid.uuid4()}", f"/{uuid.uuid4()}/status", "/not-an-id"):
        answer = httpx.get(api_url(sandbox, tail), headers=AUTH)
        assert answer.status_code == 404
        assert answer.json() == {"detail": "Not found."}


def test_the_sandbox_throttles_with_retry_after(sandbox):
    sandbox.faults(SLUG, error_status=429, error_count=1, error_on="any", retry_after=2)
    answer = httpx.get(api_url(sandbox, f"/{uuid.uuid4()}"), headers=AUTH)
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "2"
    assert answer.json() == {"detail": "Request was throttled. Expected available in 2 seconds."}


def test_the_sandbox_answers_in_the_documented_shapes(sandbox):
    quiet(sandbox)
    request = doc("submit_request")
    hook = {
        "endpoint": f"{sandbox.url}/hooks/ximilar/0/none/",
        "headers": request["webhook"]["headers"],
    }
    first = {**request, "records": [{"_base64": _b64(image_bytes())}], "webhook": hook}
    answer = httpx.post(api_url(sandbox), json=first, headers=AUTH)
    assert answer.status_code == 201
    created = answer.json()
    same_shape(doc("submit_response"), created, absent={"_url"})  # the bytes are not echoed
    assert created["status"] == "CREATED" and created["request"]["webhook"] == hook

    done = httpx.get(api_url(sandbox, f"/{created['id']}"), headers=AUTH).json()
    same_shape(doc("result_response"), done, absent={"_url"})
    record = done["response"]["records"][0]
    assert (record["_width"], record["_height"]) == (96, 80)
    assert (record["_upscaled_width"], record["_upscaled_height"]) == (192, 160)
    assert record["_status"]["code"] == 200

    # The documented request as is: the image by URL (here, the first result's link).
    by_url = {**request, "records": [{"_url": record["_upscaled_image_url"]}], "webhook": hook}
    created = httpx.post(api_url(sandbox), json=by_url, headers=AUTH).json()
    same_shape(doc("submit_response"), created)
    assert created["request"] == by_url
    done = httpx.get(api_url(sandbox, f"/{created['id']}"), headers=AUTH).json()
    same_shape(doc("result_response"), done)
    record = done["response"]["records"][0]
    assert (record["_width"], record["_upscaled_width"]) == (192, 384)
    assert httpx.get(record["_upscaled_image_url"]).content.startswith(b"\xff\xd8")  # JPEG

    status = httpx.get(api_url(sandbox, f"/{created['id']}/status"), headers=AUTH)
    assert status.json() == {"id": created["id"], "status": "DONE"}


def test_the_sandbox_reports_progress_in_ximilar_states(sandbox):
    quiet(sandbox, latency=10)
    body = {
        "type": "upscaler",
        "endpoint": "upscale_2x",
        "records": [{"_base64": _b64(image_bytes())}],
    }
    created = httpx.post(api_url(sandbox), json=body, headers=AUTH).json()
    task = SandboxTask.objects.get(public_id=created["id"])

    def look():
        return httpx.get(api_url(sandbox, f"/{created['id']}"), headers=AUTH).json()

    assert look()["status"] == "CREATED" and look()["response"] is None
    for age, expected in ((5, "PROCESSING"), (11, "DONE")):
        # Age the task instead of waiting for it.
        SandboxTask.objects.filter(pk=task.pk).update(
            created_at=task.created_at - timedelta(seconds=age)
        )
        assert look()["status"] == expected
    assert look()["response"]["records"][0]["_upscaled_image_url"]


# --- the list of all requests, and finding ours in it (jobs.recovery) -----------------------
def make_request(sandbox, **record):
    body = {
        "type": "upscaler",
        "endpoint": "upscale_2x",
        "records": [{"_base64": _b64(image_bytes()), **record}],
    }
    answer = httpx.post(api_url(sandbox), json=body, headers=AUTH)
    assert answer.status_code == 201
    return answer.json()["id"]


def without_links(request: dict) -> dict:
    records = [
        {k: v for k, v in r.items() if k != "_upscaled_image_url"}
        for r in (request.get("response") or {}).get("records", [])
    ]
    return {**request, "response": {"records": records}}


def test_the_sandbox_lists_requests_newest_first_in_drf_pages(sandbox, monkeypatch):
    quiet(sandbox)
    monkeypatch.setattr(sandbox_module, "PAGE_SIZE", 2)
    ids = [make_request(sandbox, portal_job=f"mark-{n}") for n in range(3)]
    first = httpx.get(api_url(sandbox), headers=AUTH).json()
    assert set(first) == {"count", "next", "previous", "results"}
    assert first["count"] == 3 and first["previous"] is None
    assert first["next"] == api_url(sandbox, "?page=2")
    assert [r["id"] for r in first["results"]] == ids[:0:-1]  # newest first
    detail = httpx.get(api_url(sandbox, f"/{ids[2]}"), headers=AUTH).json()
    # Each as GET /v2/request/{id} answers it, but for the result link, which is signed
    # afresh (with its own expiry) on every answer.
    assert without_links(first["results"][0]) == without_links(detail)
    assert first["results"][0]["request"]["records"][0]["portal_job"] == "mark-2"
    last = httpx.get(first["next"], headers=AUTH).json()
    assert [r["id"] for r in last["results"]] == ids[:1]
    assert last["next"] is None and last["previous"] == api_url(sandbox)  # DRF drops page=1
    for page in ("3", "0", "x"):
        answer = httpx.get(api_url(sandbox, f"?page={page}"), headers=AUTH)
        assert (answer.status_code, answer.json()) == (404, {"detail": "Invalid page."})
    assert httpx.get(api_url(sandbox)).status_code == 401


def interrupted(job_id):
    """What find_task reads of a job: its id, token and when it was handed over (now)."""
    at = timezone.now()
    return SimpleNamespace(pk=job_id, webhook_token="t", submitted_at=at, created_at=at)


def find(job):
    return pipeline.run(get_provider(SLUG).find_task, job)


def test_it_finds_our_request_pages_down_the_list(sandbox, monkeypatch, sent_requests):
    quiet(sandbox)
    monkeypatch.setattr(sandbox_module, "PAGE_SIZE", 1)
    job = interrupted(7)
    ours = make_request(sandbox, portal_job=marker(job))
    for n in range(2):  # later requests, other portals' and other jobs'
        make_request(sandbox, portal_job=f"someone-else-{n}")
    found = find(job)
    assert found.task_id == ours
    assert len(sent_requests) == 3  # three pages of one
    assert find(interrupted(8)) is None  # the whole list, and no mark of job 8 in it


def test_it_stops_searching_at_requests_older_than_the_submit(sandbox, monkeypatch, sent_requests):
    quiet(sandbox)
    monkeypatch.setattr(sandbox_module, "PAGE_SIZE", 1)
    for n in range(3):
        make_request(sandbox, portal_job=f"old-{n}")
    SandboxTask.objects.update(created_at=timezone.now() - timedelta(hours=1))
    make_request(sandbox, portal_job="recent")
    assert find(interrupted(9)) is None
    # Page 1 (recent), page 2 (an hour old, before our submit): no need to read 3 and 4.
    assert len(sent_requests) == 2


def list_of(*pages):
    """An AsyncClient whose GETs answer `pages` in turn (DRF pages as dicts)."""
    answers = iter(pages)

    def handler(request):
        return httpx.Response(200, json=next(answers))

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def ask(job, client):
    async def go():
        async with client:
            return await get_provider(SLUG).find_task(job, client)

    return asyncio.run(go())


def item(n, hours_ago, mark="other"):
    created = (timezone.now() - timedelta(hours=hours_ago)).isoformat()
    return {"id": f"r{n}", "created": created, "request": {"records": [{"portal_job": mark}]}}


def test_a_list_in_another_order_is_searched_to_its_end_or_left_unknown(settings, monkeypatch):
    base = "https://api.example.test"
    config = {"api_key": "k", "base_url": base}
    settings.PROVIDER_SETTINGS = {**settings.PROVIDER_SETTINGS, SLUG: config}
    job = interrupted(11)
    page_2 = f"{base}/account/v2/request?page=2"
    oldest_first = {"next": page_2, "results": [item(1, 5), item(2, 0)]}
    # Old requests first: their age proves nothing, so the search goes on to the end.
    last = {"next": None, "results": [item(3, 0, marker(job))]}
    assert ask(job, list_of(oldest_first, last)).task_id == "r3"
    # ... and a list longer than we search leaves the job unknown rather than "not there".
    monkeypatch.setattr(adapter, "FIND_MAX_PAGES", 1)
    with pytest.raises(ProviderError) as raised:
        ask(job, list_of(oldest_first))
    assert raised.value.code == "unknown" and not raised.value.retryable
    # A `next` link to another host is not followed with our token.
    monkeypatch.setattr(adapter, "FIND_MAX_PAGES", 5)
    elsewhere = {"next": "https://evil.example/steal?page=2", "results": [item(1, 0)]}
    with pytest.raises(ProviderError) as raised:
        ask(job, list_of(elsewhere))
    assert raised.value.code == "bad_answer"
