"""fal.ai clarityai/crystal-upscaler (doc 002), through fal's queue.

Submit `POST {queue}/clarityai/crystal-upscaler` with the image inline as a `data:` URI
(no public input URL needed) and, when webhooks are on, `?fal_webhook=<our hook>`; fal
answers a `request_id`. Poll `GET .../requests/{id}/status` (HTTP 202 while IN_QUEUE or
IN_PROGRESS, 200 once COMPLETED, which may carry `error`/`error_type`), then
`GET .../requests/{id}` for `{"images": [{"url", ...}]}`. Cancel is
`PUT .../requests/{id}/cancel`.
"""

import base64

import httpx

# The module, not its names: jobs.http imports jobs.providers.base (circular otherwise).
from jobs import http as jobs_http
from jobs.imaging import CONTENT_TYPES
from jobs.providers.base import (
    Failed,
    Finished,
    HttpProvider,
    Option,
    ProviderError,
    Refusal,
    Running,
    fits_inline,
)

MODEL = "clarityai/crystal-upscaler"
# fal builds status/result/cancel URLs from owner/app only, without an endpoint sub-path.
# This model has none, so they sit under MODEL; fal's own answers say the same.
REQUESTS = f"/{MODEL}/requests"
MAX_OUTPUT_PIXELS = 100_000_000  # INDEX.md: output capped at 100 MP
MAX_OUTPUT_SIDE = 65535
KEY_SETTING = "FAL_KEY"
# Assumption: fal documents no request size. Our sandbox takes 30 MB, and so do we: an
# image whose data: URI would not fit (a 25 MB upload is ~34 MB as base64) goes as a
# signed link to our copy instead, which fal fetches (`image_url` takes http(s) too).
INLINE_MAX_BYTES = 30 * 1024 * 1024

# fal's `error_type`s (docs.fal.ai "Request Error Types") in words a non-developer reads.
PLAIN_ERROR_TYPES = {
    "request_timeout": "the upscale took longer than fal.ai allows",
    "startup_timeout": "fal.ai could not start the model in time",
    "runner_scheduling_failure": "fal.ai had no machine free to run the model",
    "runner_disconnected": "fal.ai lost the machine running the model",
    "runner_server_error": "the model crashed on fal.ai's side",
    "client_cancelled": "the request was canceled",
    "internal_error": "fal.ai had an internal error",
}


class FalProvider(HttpProvider):
    slug = "fal"
    name = "fal.ai Crystal"
    summary = (
        "Adds lifelike detail, especially to faces and portraits; any size you like, and "
        "it can invent extra detail if you ask for more creativity."
    )
    default_base_url = "https://queue.fal.run"
    key_setting = KEY_SETTING
    supports_webhook = True
    supports_cancel = True
    options = (
        Option(
            "scale",
            "Scale factor",
            default=2.0,
            minimum=1,
            maximum=200,
            number_type=float,
            suggestions=(1.5, 2, 3, 4, 6, 8),
            help="1 to 200; the check below shows the most each image allows",
        ),
        Option(
            "creativity",
            "Creativity",
            default=0.0,
            minimum=0,
            maximum=10,
            number_type=float,
            suggestions=(0, 2, 5, 10),
            help="0 (faithful) to 10",
        ),
    )

    def output_size(self, image, options):
        scale = float(options["scale"])
        return round(image.width * scale), round(image.height * scale)

    def check(self, image, options):
        width, height = self.output_size(image, options)
        if width * height > MAX_OUTPUT_PIXELS or max(width, height) > MAX_OUTPUT_SIDE:
            raise Refusal(
                f"At {options['scale']:g}x the result would be {width}x{height} "
                f"({width * height / 1e6:.1f} MP); fal's limit is 100 MP and 65535 pixels a "
                "side. Pick a smaller scale factor.",
                "output_too_large",
            )
        if not fits_inline(image.size_bytes, INLINE_MAX_BYTES) and not self.input_links_reachable:
            raise self.unreachable_link_refusal(image, INLINE_MAX_BYTES)

    # --- wire contract ------------------------------------------------------------------
    def _headers(self) -> dict:
        return {"Authorization": f"Key {self.api_key}", "Accept": "application/json"}

    async def submit(self, job, http):
        if fits_inline(job.input_bytes, INLINE_MAX_BYTES):
            with job.input_file.open("rb") as stream:
                encoded = base64.b64encode(stream.read()).decode("ascii")
            image_url = f"data:{CONTENT_TYPES[job.input_format]};base64,{encoded}"
        else:
            from jobs import inbound  # not at the top: inbound imports the provider registry

            image_url = inbound.input_url(job)  # too big to inline: fal fetches our copy
        body = {
            "image_url": image_url,
            "scale_factor": float(job.options["scale"]),
            "creativity": float(job.options["creativity"]),
        }
        params = {"fal_webhook": self.webhook_url(job)} if self.webhooks_enabled else {}
        request = httpx.Request(
            "POST", self.url(f"/{MODEL}"), params=params, headers=self._headers(), json=body
        )
        answer = await self._call(http, request, "the job")
        request_id = answer.get("request_id")
        if not request_id:
            raise ProviderError("bad_answer", f"{self.name} accepted the job but gave no id.")
        position = answer.get("queue_position")
        where = f", position {position} in its queue" if position is not None else ""
        return Running(
            request_id, detail=f"{self.name} queued the job (request {request_id}{where})."
        )

    async def poll(self, job, http):
        request_url = self.url(f"{REQUESTS}/{job.provider_task_id}")
        status = await self._call(
            http, httpx.Request("GET", f"{request_url}/status", headers=self._headers()), "it"
        )
        state = status.get("status")
        if state in ("IN_QUEUE", "IN_PROGRESS"):
            return Running(job.provider_task_id)
        if state != "COMPLETED":
            raise ProviderError(
                "bad_answer", f"{self.name} reported an unknown status {state!r}.", retryable=True
            )
        if status.get("error"):
            return self._failed(status.get("error_type"), status["error"])
        result = await self._call(
            http, httpx.Request("GET", request_url, headers=self._headers()), "the result"
        )
        url = first_image_url(result)
        if not url:
            return Failed("no_result", f"{self.name} finished but sent no image back.")
        return Finished(url=url, task_id=job.provider_task_id)

    async def cancel(self, job, http):
        request = httpx.Request(
            "PUT",
            self.url(f"{REQUESTS}/{job.provider_task_id}/cancel"),
            headers=self._headers(),
        )
        response = await jobs_http.send(http, request, self.name)
        # 400 ALREADY_COMPLETED and 404 NOT_FOUND: nothing left to stop.
        if response.status_code in (400, 404):
            return False
        if not response.is_success:
            raise self._error(response, "the job")
        # 202 CANCELLATION_REQUESTED (it was running: fal signals the runner), or OK when
        # fal simply took it off the queue.
        return _json(response).get("status") in ("CANCELLATION_REQUESTED", "OK")

    def webhook_hint(self, data: dict) -> str:
        if "status" not in data:
            return "unreadable body"
        status = data["status"]
        if status == "ERROR":
            return f"says: ERROR ({str(data.get('error') or 'no reason given')[:100]})"
        return f"says: {str(status)[:20]}"

    # --- helpers -----------------------------------------------------------------------
    async def _call(self, http, request, what: str) -> dict:
        response = await jobs_http.send(http, request, self.name)
        if not response.is_success:
            raise self._error(response, what)
        return _json(response)

    def _failed(self, error_type, error) -> Failed:
        reason = PLAIN_ERROR_TYPES.get(error_type, "fal.ai reported an error")
        return Failed(
            error_type or "fal_error",
            f"{self.name} could not upscale this image: {reason} ({error}).",
        )

    def _error(self, response: httpx.Response, what: str) -> ProviderError:
        """A ProviderError in plain words from fal's `{"detail": ...}` error bodies."""
        status = response.status_code
        detail, error_type = self._detail(response)
        if status == 401:
            code = "invalid_api_key"
            message = (
                f"{self.name} refused the API key ({detail}). An admin needs to check "
                f"{KEY_SETTING}."
            )
        elif status == 403:
            code = "access_denied"
            message = (
                f"{self.name} refused access ({detail}). The fal.ai account may be out of "
                f"credit or the key may lack permission; an admin needs to check {KEY_SETTING} "
                "and the account's balance."
            )
        elif status in (400, 422):
            code = "invalid_input"
            message = f"{self.name} did not accept the image or its settings: {detail}."
        elif status == 404:
            code = "not_found"
            message = f"{self.name} does not know {what} any more ({detail})."
        else:  # 429 and 5xx are retried by the pipeline; others fail with fal's words
            code = error_type or ""
            message = detail
        return jobs_http.status_error(response, self.name, code, message)

    def _detail(self, response: httpx.Response) -> tuple[str, str]:
        """fal's `detail` (a string, or a list of validation errors) and `error_type`."""
        body = _json(response)
        detail = body.get("detail")
        if isinstance(detail, list):
            parts = []
            for item in detail[:3]:
                if isinstance(item, dict):
                    field = item.get("loc", [""])[-1] if item.get("loc") else ""
                    parts.append(f"{field}: {item.get('msg', '')}" if field else item.get("msg"))
            detail = "; ".join(str(p) for p in parts if p)
        if not detail:
            detail = body.get("status") or response.text[:200] or f"HTTP {response.status_code}"
        error_type = body.get("error_type") or response.headers.get("X-Fal-Error-Type", "")
        return str(detail), str(error_type)


def first_image_url(result: dict) -> str:
    """images[0].url; the model page's own example lists bare URL strings: accept both."""
    images = result.get("images") or []
    first = images[0] if images else None
    if isinstance(first, dict):
        return first.get("url") or ""
    return first if isinstance(first, str) else ""


def _json(response: httpx.Response) -> dict:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
