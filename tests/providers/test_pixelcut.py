"""Pixelcut (doc 001): the adapter against its sandbox over real HTTP, and the sandbox
against the document. Pixelcut is synchronous: one `POST /v1/upscale` answers with a
result link, so there is no polling, no webhook and no cancel to test."""

import asyncio
import email
import email.policy
import io
import json
from pathlib import Path

import httpx
import pytest
from PIL import Image

from jobs.intake import SubmissionRefused
from jobs.models import Job
from jobs.providers import ProviderError, get_provider
from jobs.sandbox import pixelcut as pixelcut_sandbox
from jobs.sandbox.models import SandboxTask
from tests.images import image_bytes
from tests.support import SANDBOX_KEY, timeline, wait_until

SLUG = "pixelcut"
PATH = "/sandbox/pixelcut/v1/upscale"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "pixelcut"
State = Job.State


def documented(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def same_shape(actual: dict, example: dict) -> bool:
    """The same keys with values of the same types as the documentation's example."""
    return set(actual) == set(example) and all(
        type(actual[key]) is type(example[key]) for key in example
    )


@pytest.fixture(autouse=True)
def fresh_rate_limit():
    # The sandbox's rate limiter lives in this process: start every test with it empty.
    pixelcut_sandbox.forget()
    yield
    pixelcut_sandbox.forget()


def upscale_calls(log) -> list[httpx.Request]:
    return [request for request in log if request.url.path == PATH]


def form_parts(request: httpx.Request) -> dict:
    """name -> (filename, content type, bytes) of a multipart/form-data body."""
    head = f"Content-Type: {request.headers['Content-Type']}\r\n\r\n".encode()
    message = email.message_from_bytes(head + request.content, policy=email.policy.HTTP)
    parts = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        parts[name] = (part.get_filename(), part.get_content_type(), part.get_payload(decode=True))
    return parts


def api(sandbox, *, key=SANDBOX_KEY, accept="application/json", **kwargs) -> httpx.Response:
    """Call the sandbox directly, as any Pixelcut client would."""
    headers = {"Accept": accept, **kwargs.pop("headers", {})}
    if key is not None:
        headers["X-API-KEY"] = key
    return httpx.post(sandbox.url + PATH, headers=headers, timeout=10, **kwargs)


def png(**kwargs) -> tuple[str, bytes, str]:
    return ("photo.png", image_bytes(**kwargs), "image/png")


def size_of(data: bytes) -> tuple[str, tuple[int, int]]:
    with Image.open(io.BytesIO(data)) as img:
        return img.format, img.size


# --- the adapter, end to end ---------------------------------------------------------------
def test_it_upscales_a_photo_end_to_end(sandbox, submit, sent_requests):
    job = sandbox.settle(submit(SLUG, scale=2, image={"width": 96, "height": 80}))

    assert job.state == State.SUCCEEDED
    assert (job.output_width, job.output_height) == (192, 160)
    assert (job.predicted_width, job.predicted_height) == (192, 160)
    assert job.output_format == "JPEG"  # no alpha in, JPEG out
    assert job.attempts == 1 and job.provider_task_id == "" and job.result_url == ""
    states = list(job.events.values_list("state", flat=True))
    assert states == ["queued", "submitting", "fetching", "succeeded"]
    assert "Pixelcut finished the job" in timeline(job)
    assert job.submitted_at <= job.finished_at
    assert len(upscale_calls(sent_requests)) == 1
    # The result was fetched from the link Pixelcut answered with, once.
    assert [r.url.path.startswith("/sandbox/files/") for r in sent_requests] == [False, True]
    assert SandboxTask.objects.filter(provider=SLUG).count() == 1


def test_it_gets_a_png_back_when_the_input_has_alpha(sandbox, submit):
    job = sandbox.settle(submit(SLUG, scale=4, image={"width": 70, "height": 64, "mode": "RGBA"}))

    assert job.state == State.SUCCEEDED
    assert (job.output_format, job.output_width, job.output_height) == ("PNG", 280, 256)


def test_it_takes_1500_pixels_at_4x_for_a_6000_pixel_result(sandbox, submit):
    job = sandbox.settle(submit(SLUG, scale=4, image={"width": 1500, "height": 64}))

    assert job.state == State.SUCCEEDED
    assert (job.output_width, job.output_height) == (6000, 256)


def test_it_sends_the_documented_multipart_request(sandbox, submit, sent_requests, settings):
    job = sandbox.settle(submit(SLUG, scale=4, image={"width": 70, "height": 90}))
    assert job.state == State.SUCCEEDED

    (call,) = upscale_calls(sent_requests)
    assert call.method == "POST"
    assert str(call.url) == sandbox.url + PATH
    assert call.headers["X-API-KEY"] == settings.SANDBOX_API_KEY  # the key as is, no scheme
    assert "Authorization" not in call.headers
    assert call.headers["Accept"] == "application/json"
    assert call.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    parts = form_parts(call)
    assert set(parts) == {"image", "scale"}
    assert parts["scale"] == (None, "text/plain", b"4")  # a plain field: 2 or 4
    filename, content_type, content = parts["image"]
    assert filename.endswith(".png") and content_type == "image/png"
    with job.input_file.open("rb") as stream:
        assert content == stream.read()


def test_it_fails_with_a_plain_message_when_pixelcut_refuses_the_key(sandbox, submit, settings):
    secret = "wrong-key-5d1e9a"
    settings.PROVIDER_SETTINGS = {
        **settings.PROVIDER_SETTINGS,
        SLUG: {"api_key": secret, "base_url": sandbox.url + "/sandbox/pixelcut"},
    }
    job = sandbox.settle(submit(SLUG))

    assert job.state == State.FAILED
    assert job.error_code == "invalid_auth_token"
    assert job.error_message == (
        "Pixelcut refused the API key (invalid_auth_token). "
        "An admin needs to check PIXELCUT_API_KEY."
    )
    assert job.attempts == 1  # an auth error is final
    assert secret not in job.error_message
    assert not any(secret in detail for detail in job.events.values_list("detail", flat=True))
    assert SandboxTask.objects.count() == 0


def test_it_fails_with_a_plain_message_when_the_account_has_no_credits(sandbox, submit):
    sandbox.faults(SLUG, error_status=403, error_count=1, error_on="submit")
    job = sandbox.settle(submit(SLUG))

    assert job.state == State.FAILED
    assert job.error_code == "insufficient_api_credits"
    assert "no credits left" in job.error_message and "top up" in job.error_message
    assert job.attempts == 1


def test_it_fails_with_pixelcuts_code_when_the_upscale_fails(sandbox, submit):
    for code, plain in [
        ("unknown_foreground", "could not find the subject of the image"),
        ("malformed_image", "could not decode the image"),
    ]:
        sandbox.faults(SLUG, task_failure=code)
        job = sandbox.settle(submit(SLUG))

        assert job.state == State.FAILED
        assert job.error_code == code
        assert job.error_message.startswith(f"Pixelcut {plain} ({code}")
        assert job.attempts == 1  # the input is the problem: not retried


def test_it_retries_after_a_429_with_retry_after_then_succeeds(sandbox, submit):
    sandbox.faults(SLUG, error_status=429, error_count=1, error_on="submit", retry_after=1)
    job = sandbox.settle(submit(SLUG))

    assert job.state == State.SUCCEEDED
    assert job.attempts == 2
    text = timeline(job)
    assert (
        "Pixelcut is busy (rate limited): Too many requests (rate_limit_exceeded). "
        "Trying again in 1 s (attempt 2 of"  # Retry-After honoured
    ) in text
    assert SandboxTask.objects.count() == 1


def test_it_retries_server_errors_with_backoff_then_succeeds(sandbox, submit):
    for status in (500, 503):
        sandbox.faults(SLUG, error_status=status, error_count=1, error_on="submit")
        job = sandbox.settle(submit(SLUG))

        assert job.state == State.SUCCEEDED
        assert job.attempts == 2
        text = timeline(job)
        assert f"Pixelcut had a server error ({status}): Internal service error." in text
        assert "Trying again in" in text


def test_it_gives_up_after_repeated_server_errors(sandbox, submit, settings):
    settings.SUBMIT_MAX_ATTEMPTS = 2
    sandbox.faults(SLUG, error_status=500, error_count=5, error_on="submit")
    job = sandbox.settle(submit(SLUG))

    assert job.state == State.FAILED
    assert job.attempts == 2
    assert "We tried 2 times and gave up; nothing was charged." in job.error_message


def test_it_does_not_resend_an_upscale_that_timed_out(sandbox, submit, sent_requests, settings):
    settings.PROVIDER_TIMEOUT = 0.5
    sandbox.faults(SLUG, slow_seconds=1.0)
    job = sandbox.settle(submit(SLUG))

    assert job.state == State.FAILED
    assert job.error_code == "submit_unknown"
    assert "was not sent again" in job.error_message
    assert job.attempts == 1 and len(upscale_calls(sent_requests)) == 1
    # The slow sandbox finishes the request we gave up on: exactly one task, no second.
    wait_until(
        lambda: SandboxTask.objects.exclude(output_name="").exists(),
        message="the sandbox never finished the slow request",
    )
    assert SandboxTask.objects.filter(provider=SLUG).count() == 1


def test_it_fails_with_result_expired_when_the_link_has_expired(sandbox, submit):
    # Pixelcut has no task to ask again for a fresh link, so an expired link is final.
    sandbox.faults(SLUG, expired_results=True)
    job = sandbox.settle(submit(SLUG))

    assert job.state == State.FAILED
    assert job.error_code == "result_expired"
    assert job.error_message == "The result link from Pixelcut has expired or is gone."


@pytest.mark.parametrize(
    "scale, width, words",
    [
        (4, 1501, "Pixelcut takes at most 1500x1500 pixels at 4x; this image is 1501x64. Try 2x"),
        # 3001 at 2x would also make a 6002-pixel result, over the 6000 px output cap.
        (2, 3001, "Pixelcut takes at most 3000x3000 pixels at 2x; this image is 3001x64."),
    ],
)
def test_it_refuses_an_image_over_the_limits_before_sending(
    submit, sent_requests, scale, width, words
):
    with pytest.raises(SubmissionRefused) as refused:
        submit(SLUG, scale=scale, image={"width": width, "height": 64})

    assert words in str(refused.value)
    assert sent_requests == []
    assert SandboxTask.objects.count() == 0 and Job.objects.count() == 0


def test_it_refuses_a_scale_pixelcut_does_not_offer(submit, sent_requests):
    with pytest.raises(SubmissionRefused) as refused:
        submit(SLUG, scale=3)

    assert "Scale 3 is not offered. Allowed: 2, 4." in str(refused.value)
    assert sent_requests == [] and SandboxTask.objects.count() == 0


def test_it_has_nothing_to_poll_and_no_webhooks():
    provider = get_provider(SLUG)
    with pytest.raises(ProviderError) as raised:
        asyncio.run(provider.poll(None, None))

    assert raised.value.code == "no_status_endpoint" and not raised.value.retryable
    assert not provider.supports_webhook and not provider.supports_cancel
    assert provider.webhook_hint({"status": "done"}) == "ignored: Pixelcut sends no webhooks"


# --- the sandbox against the document -----------------------------------------------------
def test_the_sandbox_answers_a_result_url_shaped_like_the_documentation(sandbox):
    response = api(sandbox, files={"image": png(width=80, height=70)}, data={"scale": "2"})

    assert response.status_code == 200
    assert same_shape(response.json(), documented("upscale_200"))
    result = httpx.get(response.json()["result_url"], timeout=10)
    assert result.headers["Content-Type"] == "image/jpeg"
    assert size_of(result.content) == ("JPEG", (160, 140))


def test_the_sandbox_answers_the_image_itself_for_accept_image(sandbox):
    image = png(width=64, height=66, mode="RGBA")
    response = api(sandbox, accept="image/*", files={"image": image}, data={"scale": "4"})

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"  # alpha in, PNG out
    assert size_of(response.content) == ("PNG", (256, 264))


def test_the_sandbox_takes_json_with_an_image_url(sandbox):
    first = api(sandbox, files={"image": png(width=80, height=70)}, data={"scale": "2"})
    url = first.json()["result_url"]  # a 160x140 JPEG the sandbox can fetch

    response = api(sandbox, json={"image_url": url, "scale": 2})

    assert response.status_code == 200
    result = httpx.get(response.json()["result_url"], timeout=10)
    assert size_of(result.content) == ("JPEG", (320, 280))


def test_the_sandbox_uses_the_file_when_an_image_url_is_given_too(sandbox):
    response = api(
        sandbox,
        files={"image": png(width=80, height=70)},
        data={"scale": "2", "image_url": "http://127.0.0.1:9/nowhere.png"},
    )

    assert response.status_code == 200
    result = httpx.get(response.json()["result_url"], timeout=10)
    assert size_of(result.content) == ("JPEG", (160, 140))


def test_the_sandbox_answers_the_documented_401_without_the_right_key(sandbox):
    for key in (None, "", "not-the-key", f"Bearer {SANDBOX_KEY}"):
        response = api(sandbox, key=key, files={"image": png()}, data={"scale": "2"})

        assert response.status_code == 401, key
        assert response.json() == documented("error_401")
    assert SandboxTask.objects.count() == 0


def gif() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (80, 80)).save(out, "GIF")
    return out.getvalue()


INVALID = {
    "text body": (
        {"content": b"scale=2", "headers": {"Content-Type": "text/plain"}},
        "unsupported_content_type",
    ),
    "broken json": (
        {"content": b"{scale", "headers": {"Content-Type": "application/json"}},
        "invalid_request_body",
    ),
    "json list": (
        {"content": b"[2]", "headers": {"Content-Type": "application/json"}},
        "invalid_request_body",
    ),
    "no scale": ({"files": {"image": png()}}, "missing_parameter"),
    "scale 3": ({"files": {"image": png()}, "data": {"scale": "3"}}, "invalid_parameter"),
    "json scale text": (
        {"json": {"image_url": "https://example.com/a.png", "scale": "2"}},
        "invalid_parameter",
    ),
    "no image": ({"data": {"scale": "2"}, "files": {"other": png()}}, "missing_parameter"),
    "json no image": ({"json": {"scale": 2}}, "missing_parameter"),
    "json bad url": ({"json": {"image_url": "ftp://x/a.png", "scale": 2}}, "invalid_parameter"),
    "not an image": (
        {"files": {"image": ("a.png", b"not an image", "image/png")}, "data": {"scale": "2"}},
        "malformed_image",
    ),
    "gif": (
        {"files": {"image": ("a.gif", gif(), "image/gif")}, "data": {"scale": "2"}},
        "unsupported_image_format",
    ),
    "too small": (
        {"files": {"image": png(width=63, height=80)}, "data": {"scale": "2"}},
        "invalid_parameter",
    ),
    "over 1500 at 4x": (
        {"files": {"image": png(width=1501, height=64)}, "data": {"scale": "4"}},
        "resolution_too_high",
    ),
    "over 3000 at 2x": (
        {"files": {"image": png(width=64, height=3001)}, "data": {"scale": "2"}},
        "resolution_too_high",
    ),
}


def test_the_sandbox_refuses_bad_requests_with_the_documented_codes(sandbox):
    for case, (request_kwargs, code) in INVALID.items():
        pixelcut_sandbox.forget()  # many calls in a row: keep under the rate limit
        response = api(sandbox, **request_kwargs)

        assert response.status_code == 400, case
        body = response.json()
        assert same_shape(body, documented("error_400")), case
        assert body["error_code"] == code, case
        assert body["error"].startswith(pixelcut_sandbox.TEXTS[code]), case

    pixelcut_sandbox.forget()
    too_big = ("big.png", b"\0" * (25 * 1024 * 1024 + 1), "image/png")
    response = api(sandbox, files={"image": too_big}, data={"scale": "2"})
    assert response.status_code == 400
    assert response.json() == documented("error_400")  # the document's own example
    assert SandboxTask.objects.count() == 0


def test_the_sandbox_rate_limits_a_burst_to_5_a_second(sandbox, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(pixelcut_sandbox, "clock", lambda: now[0])  # a frozen second
    cheap = {"content": b"x", "headers": {"Content-Type": "text/plain"}}

    burst = [api(sandbox, **cheap) for _ in range(7)]

    assert [r.status_code for r in burst] == [400] * 5 + [429] * 2
    assert burst[-1].json() == documented("error_429")
    assert burst[-1].headers["Retry-After"] == "1"
    now[0] += 1.01  # the window has slid past the burst
    assert api(sandbox, **cheap).status_code == 400


def test_the_sandbox_injects_errors_with_the_documented_bodies(sandbox):
    for status, body in [
        (403, documented("error_403")),
        (429, documented("error_429")),
        (500, {"error": "Internal service error"}),
        (503, {"error": "Internal service error"}),
    ]:
        sandbox.faults(SLUG, error_status=status, error_count=1, retry_after=2)

        response = api(sandbox, files={"image": png()}, data={"scale": "2"})

        assert response.status_code == status
        assert response.json() == body
        assert response.headers["Retry-After"] == "2"
        assert api(sandbox, files={"image": png()}, data={"scale": "2"}).status_code == 200


def test_the_sandbox_has_only_the_upscale_endpoint(sandbox):
    # Pixelcut has no task ids, so there is no "unknown task" to ask about.
    assert httpx.get(sandbox.url + PATH, timeout=10).status_code == 405
    assert httpx.post(sandbox.url + "/sandbox/pixelcut/v1/tasks/abc", timeout=10).status_code == 404
