"""APIXO Image Upscaler (doc 004): async task, statusTask polling or callback."""

import json

import httpx

from jobs import http as door  # `http` is the client argument's name in the interface
from jobs.providers.base import (
    KEEP_TRANSPARENCY,
    KEEP_TRANSPARENCY_HELP,
    KEEP_TRANSPARENCY_LABEL,
    Failed,
    Finished,
    HttpProvider,
    Option,
    ProviderError,
    Running,
)

MODEL = "image-upscaler"
# Assumption (the document does not say): a tier is the output's long edge, aspect kept.
LONG_EDGE = {"2k": 2048, "4k": 4096, "8k": 8192}

# The document recommends a first poll 10-15 s after creation, then every 5-10 s, and
# 10 s or more for 8k: 10 s suits every tier. The local sandbox keeps the quick default.
FIRST_POLL_SECONDS = 10.0
POLL_EVERY_SECONDS = 10.0

# The documented HTTP statuses, as stable error codes (APIXO's own body carries only the
# number and a message).
STATUS_CODES = {
    400: "invalid_request",
    401: "invalid_api_key",
    402: "insufficient_balance",
    403: "access_denied",
    404: "task_not_found",
    429: "rate_limited",
    500: "server_error",
    502: "upstream_error",
    504: "upstream_timeout",
}
# Final refusals, in words an admin or a user can act on; `{}` is APIXO's own message.
FINAL_MESSAGES = {
    400: "APIXO refused the request ({}). Nothing was charged; please report this job.",
    401: "APIXO refused the API key ({}). An admin needs to check APIXO_API_KEY.",
    402: "APIXO says the account's balance or quota is used up ({}). "
    "An admin needs to add balance.",
    403: "APIXO says this API key may not use the Image Upscaler ({}). "
    "An admin needs to check the key's permissions.",
    404: "APIXO does not know this task or model ({}). Run the job again; if it keeps "
    "happening, an admin needs to check APIXO_BASE_URL.",
}
# The documented task failure codes (`failCode`), explained.
FAILURES = {
    "ImageFormatIncorrect": "APIXO could not read this image (ImageFormatIncorrect). "
    "Use a JPG, PNG or WebP image.",
    "SensitiveContent": "APIXO's safety check refused this image (SensitiveContent). "
    "Try a different image.",
    "RateLimited": "APIXO was too busy and gave up on the task (RateLimited). "
    "Run it again in a few minutes.",
    "Timeout": "APIXO did not finish the task in time (Timeout). Run it again, "
    "perhaps at a lower resolution.",
}


class ApixoProvider(HttpProvider):
    slug = "apixo"
    name = "APIXO"
    summary = (
        "Makes the long side 2,000, 4,000 or 8,000 pixels, whatever the image's size. "
        "The same low price per image."
    )
    default_base_url = "https://api.apixo.ai/api/v1"
    supports_webhook = True
    options = (
        Option(
            "resolution",
            "Resolution",
            default="4k",
            choices=(("2k", "2k"), ("4k", "4k"), ("8k", "8k")),
        ),
        Option(
            "output_format",
            "Format",
            # Resolved per image when the job is made (base.resolve_options): APIXO
            # itself only takes jpg, png or webp.
            default=KEEP_TRANSPARENCY,
            choices=(
                (KEEP_TRANSPARENCY, KEEP_TRANSPARENCY_LABEL),
                ("jpg", "JPEG"),
                ("png", "PNG"),
                ("webp", "WebP"),
            ),
            help=KEEP_TRANSPARENCY_HELP,
        ),
    )

    def output_size(self, image, options):
        edge = LONG_EDGE[options["resolution"]]
        if image.width >= image.height:
            return edge, max(1, round(image.height * edge / image.width))
        return max(1, round(image.width * edge / image.height)), edge

    def first_poll_delay(self):
        return super().first_poll_delay() if self.is_sandbox else FIRST_POLL_SECONDS

    def poll_delay(self, poll_count):
        return super().poll_delay(poll_count) if self.is_sandbox else POLL_EVERY_SECONDS

    # --- wire contract ------------------------------------------------------------------
    def callback_url(self, job) -> str:
        """Our webhook URL when callback mode can be used, else "" (then we poll)."""
        if not self.webhooks_enabled:
            return ""
        url = self.webhook_url(job)
        # APIXO wants a public HTTPS callback_url; the sandbox is local and takes http.
        return url if url.startswith("https://") or self.is_sandbox else ""

    async def submit(self, job, http):
        from jobs import inbound  # not at the top: inbound imports the provider registry

        body = {
            "request_type": "async",
            "input": {
                "mode": "image-to-image",
                # APIXO only takes image URLs: a signed, expiring link to our copy.
                "image_urls": [inbound.input_url(job)],
                "resolution": job.options["resolution"],
                "output_format": job.options["output_format"],
            },
        }
        callback = self.callback_url(job)
        if callback:
            body["request_type"] = "callback"
            body["callback_url"] = callback
        request = httpx.Request(
            "POST",
            self.url(f"/generateTask/{MODEL}"),
            headers={**self.auth(), "Content-Type": "application/json"},
            content=json.dumps(body).encode(),
        )
        data = self.answer(await door.send(http, request, self.name))
        task_id = str(data.get("taskId") or "")
        if not task_id:
            raise ProviderError("bad_answer", "APIXO accepted the job but sent no task id.")
        mode = "it will call back" if callback else "we will check on it"
        return Running(task_id, f"APIXO accepted the job (task {task_id}); {mode}.")

    async def poll(self, job, http):
        request = httpx.Request(
            "GET",
            self.url(f"/statusTask/{MODEL}"),
            params={"taskId": job.provider_task_id},
            headers=self.auth(),
        )
        data = self.answer(await door.send(http, request, self.name))
        state = data.get("state")
        if state == "success":
            return Finished(url=result_url(data), task_id=job.provider_task_id)
        if state == "failed":
            code = str(data.get("failCode") or "Unknown error")
            return Failed(code, self.failure_message(code, data.get("failMsg"), job))
        # "pending", "processing", or a state the document does not list yet: keep
        # polling; the tracker gives up after POLL_MAX_SECONDS.
        return Running(job.provider_task_id)

    def webhook_hint(self, data: dict) -> str:
        data = data.get("data")
        if not isinstance(data, dict) or "state" not in data:
            return "unreadable body"
        state = str(data["state"])
        if state == "failed":
            return f"says: failed ({data.get('failCode') or 'no code'})"
        return f"says: {state}"

    # --- helpers ------------------------------------------------------------------------
    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.api_key}"}

    def answer(self, response: httpx.Response) -> dict:
        """`data` of a successful envelope; a ProviderError for anything else."""
        try:
            envelope = response.json()
        except ValueError:
            envelope = {}
        if not isinstance(envelope, dict):
            envelope = {}
        status = response.status_code
        code = envelope.get("code")
        if response.is_success and isinstance(code, int) and code != 200:
            # Gateways in this style sometimes answer HTTP 200 with the error in the
            # envelope's `code`: classify it as if it were the HTTP status.
            status = code
            response = httpx.Response(code, headers=response.headers, request=response.request)
        message = str(envelope.get("message") or "")
        if not 200 <= status < 300:
            raise self.error(response, message)
        data = envelope.get("data")
        if not isinstance(data, dict):
            raise ProviderError("bad_answer", "APIXO answered without the expected data.")
        return data

    def error(self, response: httpx.Response, message: str) -> ProviderError:
        status = response.status_code
        code = STATUS_CODES.get(status, f"http_{status}")
        if status in FINAL_MESSAGES:
            message = FINAL_MESSAGES[status].format(message or f"HTTP {status}")
        return door.status_error(response, self.name, code, message)

    def failure_message(self, code: str, fail_msg, job) -> str:
        if code in FAILURES:
            return FAILURES[code]
        said = f": {fail_msg}" if fail_msg else ""
        return (
            f"APIXO could not upscale this image ({code}{said}). Run it again; if it keeps "
            f"failing, contact APIXO support with task id {job.provider_task_id}."
        )


def result_url(data: dict) -> str:
    """`resultJson` is a JSON string (parsed only once the state is success)."""
    try:
        urls = json.loads(data["resultJson"])["resultUrls"]
        url = urls[0]
    except (KeyError, IndexError, TypeError, ValueError):
        url = None
    if not isinstance(url, str) or not url:
        raise ProviderError("bad_answer", "APIXO said the job succeeded but gave no result link.")
    return url
