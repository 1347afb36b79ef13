"""fal.ai (clarityai/crystal-upscaler through fal's queue): the adapter against its sandbox,
over real HTTP, and the sandbox against the documented wire contract.

The documented example payloads live in tests/fixtures/fal/; the sandbox's answers must
have the same keys and types."""

import base64
import json
from pathlib import Path

import httpx
import pytest
from django.utils import timezone

from jobs import intake, pipeline
from jobs.models import Job, JobEvent, WebhookDelivery
from jobs.providers import Failed, Finished, get_provider
from jobs.providers.fal import MODEL, first_image_url
from jobs.sandbox import engine as sandbox_engine
from jobs.sandbox import fal as fal_sandbox
from jobs.sandbox.models import SandboxTask
from tests.images import image_bytes
from tests.support import SANDBOX_KEY, states, timeline, wait_until

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "fal"
KEY = SANDBOX_KEY


def fixture(name: str):
    return json.loads((FIXTURES / f"{name}.json").read_text())


def shape(value):
    """Keys and JSON types, recursively (lists by their first item)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


@pytest.fixture
def fal(sandbox, settings):
    """Most tests poll; the webhook tests switch webhooks back on."""
    settings.WEBHOOKS_ENABLED = False
    return sandbox


@pytest.fixture
def api(fal):
    """A plain client for the sandbox's own API."""
    with httpx.Client(base_url=f"{fal.url}/sandbox/fal/", timeout=10) as client:
        yield client


def auth(key=KEY):
    return {"Authorization": f"Key {key}"}


# --- the whole way through -------------------------------------------------------------
def test_it_upscales_an_image_end_to_end(fal, submit):
    job = fal.settle(submit("fal", scale=2.5, creativity=1))
    assert job.state == Job.State.SUCCEEDED, timeline(job)
    assert (job.output_width, job.output_height) == (240, 200)  # 96x80 at 2.5x
    assert (job.predicted_width, job.predicted_height) == (240, 200)
    assert job.output_format == "PNG"
    assert states(job) == ["queued", "submitting", "running", "fetching", "succeeded"]
    assert "queued the job (request " in timeline(job)
    task = SandboxTask.objects.get(provider="fal")
    assert job.provider_task_id == task.public_id
    assert task.params["scale_factor"] == 2.5 and task.params["creativity"] == 1.0


def test_it_sends_the_documented_request(fal, submit, sent_requests, settings):
    settings.WEBHOOKS_ENABLED = True
    fal.faults("fal", webhook="off")  # the URL is sent; nothing is delivered
    job = fal.settle(submit("fal", scale=3, creativity=2.5))
    assert job.state == Job.State.SUCCEEDED

    post = sent_requests[0]
    assert post.method == "POST"
    assert post.url.path == f"/sandbox/fal/{MODEL}"
    assert post.headers["Authorization"] == f"Key {KEY}"
    assert post.headers["Content-Type"] == "application/json"
    assert dict(post.url.params) == {"fal_webhook": get_provider("fal").webhook_url(job)}
    body = json.loads(post.content)
    assert set(body) == {"image_url", "scale_factor", "creativity"}
    # The documented examples' fields, with the documented types.
    for example in (fixture("request_required"), fixture("request_full")):
        assert {k: shape(body[k]) for k in example} == shape(example)
    assert isinstance(body["creativity"], float) and body["creativity"] == 2.5
    assert isinstance(body["scale_factor"], float) and body["scale_factor"] == 3.0
    prefix = "data:image/png;base64,"
    assert body["image_url"].startswith(prefix)
    with job.input_file.open("rb") as stream:
        assert base64.b64decode(body["image_url"][len(prefix) :]) == stream.read()

    base = f"/sandbox/fal/{MODEL}/requests/{job.provider_task_id}"
    polls = [(r.method, r.url.path, r.headers.get("Authorization")) for r in sent_requests[1:3]]
    assert polls == [("GET", f"{base}/status", f"Key {KEY}"), ("GET", base, f"Key {KEY}")]
    assert sent_requests[3].url.path.startswith("/sandbox/files/")  # the download, no key sent
    assert "Authorization" not in sent_requests[3].headers


def test_it_talks_to_the_real_queue_when_a_key_is_set(settings):
    settings.PROVIDER_SETTINGS = {"fal": {"api_key": "id:secret", "base_url": ""}}
    provider = get_provider("fal")
    assert not provider.is_sandbox
    assert provider.url(f"/{MODEL}") == "https://queue.fal.run/clarityai/crystal-upscaler"


# --- errors ----------------------------------------------------------------------------
def test_it_fails_plainly_when_fal_refuses_the_key(fal, submit, settings):
    secret = "wrong-fal-key-5d1e"
    settings.PROVIDER_SETTINGS = {
        **settings.PROVIDER_SETTINGS,
        "fal": {"api_key": secret, "base_url": fal.url + "/sandbox/fal"},
    }
    job = fal.settle(submit("fal"))
    assert job.state == Job.State.FAILED
    assert job.error_code == "invalid_api_key"
    assert "refused the API key" in job.error_message and "FAL_KEY" in job.error_message
    assert secret not in job.error_message
    assert not any(secret in d for d in JobEvent.objects.values_list("detail", flat=True))
    assert SandboxTask.objects.filter(provider="fal").count() == 0


@pytest.mark.parametrize(
    "status, call, code, words",
    [
        (403, "submit", "access_denied", "out of credit"),
        (422, "submit", "invalid_input", "did not accept the image"),
        (404, "poll", "not_found", "does not know it any more"),
    ],
)
def test_it_fails_plainly_on_a_final_error(fal, submit, status, call, code, words):
    fal.faults("fal", error_status=status, error_count=5, error_on=call)
    job = fal.settle(submit("fal"))
    assert job.state == Job.State.FAILED
    assert job.error_code == code
    assert words in job.error_message
    assert job.attempts == 1  # a final error is not retried


@pytest.mark.parametrize("status", [429, 500, 503])
def test_it_retries_a_busy_or_broken_submit_and_then_succeeds(fal, submit, status):
    fal.faults("fal", error_status=status, error_count=1, error_on="submit", retry_after=1)
    job = fal.settle(submit("fal"))
    assert job.state == Job.State.SUCCEEDED, timeline(job)
    assert job.attempts == 2
    said = "is busy (rate limited)" if status == 429 else f"had a server error ({status})"
    assert said in timeline(job)
    assert "Trying again" in timeline(job)
    assert SandboxTask.objects.filter(provider="fal").count() == 1


def test_it_gives_up_after_too_many_server_errors_with_fals_error_type(fal, submit, settings):
    settings.SUBMIT_MAX_ATTEMPTS = 2
    fal.faults("fal", error_status=503, error_count=5, error_on="submit")
    job = fal.settle(submit("fal"))
    assert job.state == Job.State.FAILED
    assert job.error_code == "runner_scheduling_failure"
    assert "tried 2 times and gave up" in job.error_message


def test_it_keeps_polling_after_a_server_error_on_status(fal, submit):
    fal.faults("fal", error_status=500, error_count=1, error_on="poll")
    job = fal.settle(submit("fal"))
    assert job.state == Job.State.SUCCEEDED, timeline(job)
    assert "Checking on the job failed" in timeline(job)
    assert job.attempts == 1


def test_it_does_not_resend_a_submit_that_timed_out(fal, submit, settings):
    settings.PROVIDER_TIMEOUT = 0.5
    fal.faults("fal", slow_seconds=1.0)
    job = fal.settle(submit("fal"))
    assert job.state == Job.State.FAILED
    assert job.error_code == "submit_unknown"
    assert "not sent again" in job.error_message
    assert job.attempts == 1
    # The slow sandbox did take it, after our client gave up: exactly one task.
    wait_until(lambda: SandboxTask.objects.filter(provider="fal").exists())
    assert SandboxTask.objects.filter(provider="fal").count() == 1


def test_it_fails_with_fals_error_type_when_the_task_fails(fal, submit):
    fal.faults("fal", task_failure="runner_server_error")
    job = fal.settle(submit("fal"))
    assert job.state == Job.State.FAILED
    assert job.error_code == "runner_server_error"
    assert job.error_message == (
        "fal.ai Crystal could not upscale this image: the model crashed on fal.ai's side "
        "(Runner encountered an internal server error)."
    )


def test_it_fails_plainly_when_the_result_link_has_expired(fal, submit):
    # A re-poll hands out a fresh link, but with this fault every link is already
    # expired: the job fails as result_expired.
    fal.faults("fal", expired_results=True)
    job = fal.settle(submit("fal"))
    assert job.state == Job.State.FAILED
    assert job.error_code == "result_expired"
    assert "expired" in job.error_message


# --- refusals before anything is sent --------------------------------------------------
def test_it_refuses_what_fal_cannot_take_before_sending(fal, submit):
    cases = [
        ({"scale": 200}, "fal's limit is 100 MP"),  # 19200x16000 would be 307 MP
        ({"scale": 250}, "Scale factor must be a number from 1 to 200"),
        ({"creativity": 11}, "Creativity must be a number from 0 to 10"),
    ]
    for options, words in cases:
        with pytest.raises(intake.SubmissionRefused) as refused:
            submit("fal", **options)
        assert words in str(refused.value)
    assert not Job.objects.exists()
    assert SandboxTask.objects.filter(provider="fal").count() == 0


# --- cancel ----------------------------------------------------------------------------
def test_it_cancels_a_running_request_at_fal(fal, submit, owner, api):
    fal.faults("fal", latency=30)
    job = submit("fal")
    assert job.state == Job.State.RUNNING

    assert pipeline.cancel(job, by=owner)
    job.refresh_from_db()
    assert job.state == Job.State.CANCELED
    assert "fal.ai Crystal confirmed it stopped the task." in timeline(job)
    assert SandboxTask.objects.get(public_id=job.provider_task_id).canceled_at is not None
    status = api.get(f"{MODEL}/requests/{job.provider_task_id}/status", headers=auth())
    assert status.status_code == 200
    assert status.json()["error_type"] == "client_cancelled"


def test_it_says_when_the_request_had_already_completed(fal, submit):
    job = fal.settle(submit("fal"))
    assert job.state == Job.State.SUCCEEDED
    assert pipeline.run(get_provider("fal").cancel, job) is False


# --- webhooks --------------------------------------------------------------------------
def wait_final(job):
    """Wait without ticking the tracker: only a webhook can move the job on."""
    wait_until(lambda: Job.objects.get(pk=job.pk).state in Job.FINAL_STATES)
    sandbox_engine.wait_for_webhooks()
    job.refresh_from_db()
    return job


def test_a_webhook_finishes_the_job_without_waiting_for_the_tracker(fal, submit, settings):
    settings.WEBHOOKS_ENABLED = True
    fal.faults("fal", latency=0.3)
    job = wait_final(submit("fal"))
    assert job.state == Job.State.SUCCEEDED, timeline(job)
    assert job.poll_count == 0  # no tracker poll came before the webhook's confirmation
    assert "Webhook from fal.ai Crystal: says: OK. Confirming with fal.ai Crystal." in timeline(job)
    assert WebhookDelivery.objects.get(job=job).hint == "says: OK"


def test_a_duplicate_webhook_finishes_the_job_once(fal, submit, settings):
    settings.WEBHOOKS_ENABLED = True
    fal.faults("fal", latency=0.3, webhook="duplicate")
    job = wait_final(submit("fal"))
    assert job.state == Job.State.SUCCEEDED
    assert WebhookDelivery.objects.filter(job=job).count() == 1
    assert job.events.filter(state=Job.State.SUCCEEDED).count() == 1
    assert job.events.filter(state=Job.State.FETCHING).count() == 1


def test_a_webhook_with_a_forged_token_changes_nothing(fal, submit, client):
    fal.faults("fal", latency=30)
    job = submit("fal")
    before = (job.state, job.next_poll_at, job.events.count())
    response = client.post(
        f"/hooks/fal/{job.pk}/forged-token/",
        data=json.dumps({**fixture("webhook_ok"), "request_id": job.provider_task_id}),
        content_type="application/json",
    )
    assert response.status_code == 404
    job.refresh_from_db()
    assert (job.state, job.next_poll_at, job.events.count()) == before
    assert not WebhookDelivery.objects.exists()


def test_a_stale_webhook_after_success_changes_nothing(fal, submit, client):
    job = fal.settle(submit("fal"))
    assert job.state == Job.State.SUCCEEDED
    before = (job.state, job.output_file.name, job.events.count(), job.finished_at)
    stale = {**fixture("webhook_error"), "request_id": job.provider_task_id}
    response = client.post(
        f"/hooks/fal/{job.pk}/{job.webhook_token}/",
        data=json.dumps(stale),
        content_type="application/json",
    )
    assert response.status_code == 200
    job.refresh_from_db()
    assert (job.state, job.output_file.name, job.events.count(), job.finished_at) == before


def test_the_webhook_hint_reads_fals_bodies_and_tolerates_garbage():
    provider = get_provider("fal")
    assert provider.webhook_hint(fixture("webhook_ok")) == "says: OK"
    error = provider.webhook_hint(fixture("webhook_error"))
    assert error == "says: ERROR (Invalid status code: 500)"
    # Bodies that are not JSON objects never get here: the hook view answers them 400.
    for garbage in ({}, {"no": "status"}):
        assert provider.webhook_hint(garbage) == "unreadable body"


def test_it_reads_the_result_in_both_documented_shapes():
    url = "https://v3b.fal.media/files/b/penguin/sVriwxLaU3fVTz5B-xBBC_upscaled.png"
    assert first_image_url(fixture("result")) == url
    assert first_image_url(fixture("result_model_page_example")) == url
    assert first_image_url({"images": []}) == ""


# --- the sandbox itself ----------------------------------------------------------------
def post_job(api, headers=None, **body):
    body = {"image_url": data_uri(image_bytes()), **body}
    return api.post(MODEL, json=body, headers=auth() if headers is None else headers)


def test_the_sandbox_wants_fals_key_header(api):
    missing = post_job(api, headers={})
    assert missing.status_code == 401
    assert missing.json() == fixture("error_401_missing")
    wrong = post_job(api, headers=auth("nope"))
    assert wrong.status_code == 401
    assert wrong.json() == {"detail": "No user found for Key ID and Secret"}
    bearer = post_job(api, headers={"Authorization": f"Bearer {KEY}"})
    assert bearer.status_code == 401
    assert not SandboxTask.objects.exists()


def test_the_sandbox_validates_like_fal(api):
    cases = [
        ({"scale_factor": 300}, "scale_factor", "Input should be less than or equal to 200"),
        ({"scale_factor": 0.5}, "scale_factor", "Input should be greater than or equal to 1"),
        ({"creativity": 11}, "creativity", "Input should be less than or equal to 10"),
        ({"creativity": -1}, "creativity", "Input should be greater than or equal to 0"),
    ]
    (example,) = fixture("error_422")["detail"]
    for body, loc, msg in cases:
        answer = post_job(api, **body)
        assert answer.status_code == 422
        (error,) = answer.json()["detail"]
        assert (error["loc"], error["msg"]) == (["body", loc], msg)
        # The documented example's shape; `ctx` names the bound that was crossed.
        assert shape({**error, "ctx": {}}) == shape({**example, "ctx": {}})
        assert error["type"] in ("less_than_equal", "greater_than_equal") and error["ctx"]

    not_a_number = post_job(api, creativity="high").json()["detail"]
    assert not_a_number == [
        {
            "loc": ["body", "creativity"],
            "msg": "Input should be a valid number",
            "type": "float_type",
        }
    ]
    missing = api.post(MODEL, json={"scale_factor": 2}, headers=auth())
    assert missing.status_code == 422
    assert missing.json()["detail"] == [
        {"loc": ["body", "image_url"], "msg": "Field required", "type": "missing"}
    ]
    assert not SandboxTask.objects.exists()


def test_the_sandbox_refuses_an_image_it_cannot_read(api):
    answer = post_job(api, image_url="data:image/png;base64," + base64.b64encode(b"no").decode())
    assert answer.status_code == 422
    (error,) = answer.json()["detail"]
    assert error["loc"] == ["body", "image_url"] and error["type"] == "image_load_error"


def test_the_sandbox_answers_404_for_an_unknown_request(api):
    base = f"{MODEL}/requests/00000000-0000-0000-0000-000000000000"
    for answer in (api.get(f"{base}/status", headers=auth()), api.get(base, headers=auth())):
        assert answer.status_code == 404
        assert answer.json() == {"detail": "Request not found"}
    cancel = api.put(f"{base}/cancel", headers=auth())
    assert cancel.status_code == 404 and cancel.json() == {"status": "NOT_FOUND"}


def test_the_sandbox_answers_in_the_documented_shapes(fal, api):
    fal.faults("fal", latency=10)
    answer = post_job(api, scale_factor=2)
    assert answer.status_code == 200
    submitted = answer.json()
    assert shape(submitted) == shape(fixture("submit_answer"))
    request_id = submitted["request_id"]
    base = f"{fal.url}/sandbox/fal/{MODEL}/requests/{request_id}"
    assert submitted["status_url"] == f"{base}/status"  # absolute, for fal-client
    assert submitted["response_url"] == base
    assert submitted["cancel_url"] == f"{base}/cancel"

    def status(age):
        SandboxTask.objects.filter(public_id=request_id).update(
            created_at=timezone.now() - timezone.timedelta(seconds=age)
        )
        return api.get(submitted["status_url"], params={"logs": 1}, headers=auth())

    queued = status(0)
    assert queued.status_code == 202
    assert shape(queued.json()) == shape(fixture("status_in_queue"))
    running = status(5)
    assert running.status_code == 202
    assert shape(running.json()) == shape(fixture("status_in_progress"))
    early = api.get(submitted["response_url"], headers=auth())
    assert early.status_code == 400
    assert early.json() == {"detail": "Request is still in progress"}

    done = status(20)
    assert done.status_code == 200
    assert shape({**done.json(), "logs": []}) == shape(fixture("status_completed"))
    result = api.get(submitted["response_url"], headers=auth())
    assert result.status_code == 200
    assert shape(result.json()) == shape(fixture("result"))
    (image,) = result.json()["images"]
    assert (image["width"], image["height"]) == (192, 160)
    png = httpx.get(image["url"])
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert image["file_size"] == len(png.content)

    again = api.put(submitted["cancel_url"], headers=auth())
    assert again.status_code == 400
    assert again.json() == fixture("cancel_already_completed")
    task = SandboxTask.objects.get(public_id=request_id)
    assert shape(fal_sandbox.webhook_body(task)) == shape(fixture("webhook_ok"))


def test_the_sandbox_reports_a_failed_request_the_way_fal_does(fal, api):
    fal.faults("fal", task_failure="request_timeout")
    submitted = post_job(api).json()
    status = api.get(submitted["status_url"], headers=auth())
    assert status.status_code == 200
    assert shape(status.json()) == shape(fixture("status_completed_error"))
    assert status.json()["error_type"] == "request_timeout"
    result = api.get(submitted["response_url"], headers=auth())
    assert result.status_code == 504
    assert result.json() == fixture("error_request")
    assert result.headers["X-Fal-Error-Type"] == "request_timeout"
    task = SandboxTask.objects.get(public_id=submitted["request_id"])
    assert shape(fal_sandbox.webhook_body(task)) == shape(fixture("webhook_error"))


def test_the_sandbox_cancels_a_queued_request(fal, api):
    fal.faults("fal", latency=30)
    submitted = post_job(api).json()
    answer = api.put(submitted["cancel_url"], headers=auth())
    assert answer.status_code == 202
    assert answer.json() == fixture("cancel_requested")


def test_the_sandbox_answers_injected_faults_with_retry_after(fal, api):
    fal.faults("fal", error_status=429, error_count=1, error_on="submit", retry_after=7)
    busy = post_job(api)
    assert busy.status_code == 429
    assert busy.headers["Retry-After"] == "7"
    assert isinstance(busy.json()["detail"], str)
    assert post_job(api).status_code == 200


def test_a_failed_status_becomes_a_failed_result_without_fetching(fal, submit):
    fal.faults("fal", latency=30)
    job = submit("fal")
    SandboxTask.objects.filter(public_id=job.provider_task_id).update(
        failure_code="startup_timeout", created_at=timezone.now() - timezone.timedelta(hours=1)
    )
    outcome = pipeline.run(get_provider("fal").poll, job)
    assert outcome == Failed(
        "startup_timeout",
        "fal.ai Crystal could not upscale this image: fal.ai could not start the model in "
        "time (Runner did not start in time).",
    )
    assert not isinstance(outcome, Finished)
