"""Pixazo Crystal Upscaler (doc 000): async JSON, webhook, Replicate-style predictions.

Pixazo only takes the image as a URL, so it gets a signed, expiring link to our copy
(`jobs.inbound.input_url`). The answer to a submit is a Replicate prediction
(`philz1337x/crystal-upscaler`); completion comes by webhook (a hint we confirm) or by
polling Pixazo's generic status endpoint (INDEX.md, "Pixazo")."""

from urllib.parse import quote

import httpx

from jobs import http
from jobs.providers.base import Failed, Finished, HttpProvider, Option, ProviderError, Running

SCALES = (2, 4, 6, 8)
# Polling is not documented for this model; Pixazo's other async models answer here.
# Kept in one place so it can be corrected (INDEX.md, "Pixazo").
STATUS_PATH = "/v2/requests/status/{id}"
GENERATE_PATH = "/upscaler/v1/crystal-upscaler/generate"
# Only "completed" (success or failure) interests us; ["*"] would add start/log events.
WEBHOOK_EVENTS = ["completed"]

# The status endpoint speaks Pixazo's words (QUEUED, PROCESSING, COMPLETED, FAILED,
# ERROR); the submit answer and the webhook speak Replicate's (starting, processing,
# succeeded, failed, canceled). Both are understood everywhere, since the polling contract
# is an assumption. Any other word means "still working"; the poll deadline bounds that.
SUCCEEDED = {"COMPLETED", "SUCCEEDED"}
FAILED = {"FAILED", "ERROR", "CANCELED"}

# HTTP status -> (our code, plain message). {error} is Pixazo's own text.
FINAL_ERRORS = {
    400: (
        "invalid_request",
        "Pixazo refused the request ({error}). The image or options were not accepted; "
        "sending the same request again will not help.",
    ),
    401: (
        "invalid_auth",
        "Pixazo refused the API key ({error}). An admin needs to check PIXAZO_API_KEY.",
    ),
    402: (
        "no_credits",
        "The Pixazo account has no credits left ({error}). An admin needs to top it up.",
    ),
    403: (
        "access_denied",
        "Pixazo denied access ({error}): the subscription may not include the Crystal "
        "Upscaler. An admin needs to check the Pixazo plan.",
    ),
    404: (
        "not_found",
        "Pixazo does not know this endpoint or task ({error}). An admin may need to check "
        "PIXAZO_BASE_URL.",
    ),
}


class PixazoProvider(HttpProvider):
    slug = "pixazo"
    name = "Pixazo Crystal"
    summary = (
        "Adds lifelike detail, especially to faces and portraits. The price grows with "
        "the size of the result."
    )
    default_base_url = "https://gateway.pixazo.ai"
    supports_webhook = True
    options = (Option("scale", "Scale", default=2, choices=tuple((s, f"{s}x") for s in SCALES)),)

    def output_size(self, image, options):
        return image.width * options["scale"], image.height * options["scale"]

    # --- wire contract ------------------------------------------------------------------
    async def submit(self, job, http_client):
        from jobs.inbound import input_url  # jobs.inbound imports the provider registry

        body = {"image": input_url(job), "scale_factor": int(job.options["scale"])}
        if self.webhooks_enabled:
            body["webhook"] = self.webhook_url(job)
            body["webhook_events_filter"] = WEBHOOK_EVENTS
        request = httpx.Request(
            "POST", self.url(GENERATE_PATH), json=body, headers=self._headers(json_body=True)
        )
        response = await http.send(http_client, request, self.name)
        data = self._answer(response)
        task_id = str(data.get("id") or "")
        if not task_id:
            # It said 2xx, so it may well have taken the job: never resend blindly.
            said = f" ({str(data['error'])[:200]})" if data.get("error") else ""
            raise ProviderError(
                "bad_response",
                f"{self.name} answered without a prediction id{said}.",
                retryable=True,
                maybe_received=True,
            )
        return self._result(task_id, data) or Running(task_id)

    async def poll(self, job, http_client):
        task_id = job.provider_task_id
        request = httpx.Request(
            "GET", self.url(STATUS_PATH.format(id=quote(task_id, safe=""))), headers=self._headers()
        )
        response = await http.send(http_client, request, self.name)
        data = self._answer(response)
        return self._result(task_id, data) or Running(task_id)

    def webhook_hint(self, data: dict) -> str:
        if "status" not in data:
            return "unreadable body"
        status = str(data["status"])
        error = data.get("error")
        return f"says: {status}" + (f" ({str(error)[:100]})" if error else "")

    # --- helpers ------------------------------------------------------------------------
    def _headers(self, json_body=False) -> dict:
        headers = {"Cache-Control": "no-cache", "Ocp-Apim-Subscription-Key": self.api_key}
        if json_body:
            headers["Content-Type"] = "application/json"
        return headers

    def _answer(self, response: httpx.Response) -> dict:
        """The JSON of a 2xx answer; a ProviderError for anything else."""
        if not response.is_success:
            raise self._error(response)
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ProviderError(
                "bad_response",
                f"{self.name} answered with something that is not JSON.",
                retryable=True,
                maybe_received=True,
            )
        return data

    def _error(self, response: httpx.Response) -> ProviderError:
        try:
            body = response.json()
        except ValueError:
            body = {}
        # The documented body is {"error": ...}; the API gateway in front (Azure APIM, by
        # its key header) answers some errors itself with {"statusCode", "message"}.
        text = ""
        if isinstance(body, dict):
            text = str(body.get("error") or body.get("message") or "")[:200]
        text = text or f"HTTP {response.status_code}"
        status = response.status_code
        if status in FINAL_ERRORS:
            code, message = FINAL_ERRORS[status]
            return http.status_error(response, self.name, code, message.format(error=text))
        code = "rate_limited" if status == 429 else "server_error" if status >= 500 else ""
        return http.status_error(response, self.name, code, text)

    def _result(self, task_id: str, data: dict):
        """Finished / Failed when the prediction is over; None while it is pending."""
        status = str(data.get("status") or "").upper()
        if status in SUCCEEDED:
            url = result_url(data.get("output"))
            if not url:
                return Failed(
                    "no_result", f"{self.name} reported the job done but gave no result link."
                )
            return Finished(url=url, task_id=task_id)
        if status in FAILED:
            reason = str(data.get("error") or "no reason given")[:300]
            return Failed(
                status.lower(),
                f"{self.name} could not upscale this image ({status}: {reason}).",
            )
        return None


def result_url(output) -> str:
    """The result link from any of the shapes seen: the status endpoint's
    {"media_url": ...}, Replicate's list of URLs, or one URL string (older model)."""
    if isinstance(output, dict):
        output = output.get("media_url")
    if isinstance(output, list):
        output = output[0] if output else ""
    return output if isinstance(output, str) else ""
