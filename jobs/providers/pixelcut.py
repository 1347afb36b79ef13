"""Pixelcut Upscale (doc 001): synchronous; the file goes as multipart.

One call does the whole job: `POST /v1/upscale` with the image bytes and the scale
answers `{"result_url"}` (valid one hour), which the pipeline downloads at once. There
is no task id, no status endpoint, no webhook and no cancel.
"""

import posixpath

import httpx

# The module, not its names: jobs.http imports jobs.providers.base, so a name import
# here would be circular.
from jobs import http as jobs_http
from jobs.imaging import CONTENT_TYPES
from jobs.providers.base import Finished, HttpProvider, Option, ProviderError, Refusal

MAX_INPUT_BYTES = 25 * 1024 * 1024
MIN_SIDE = 64
MAX_INPUT_SIDE = {2: 3000, 4: 1500}  # per scale, from the document
MAX_OUTPUT_SIDE = 6000
UPSCALE_PATH = "/v1/upscale"

# Pixelcut's documented 400 error codes, in words a non-developer understands.
PLAIN_400 = {
    "invalid_request_body": "Pixelcut could not read our request",
    "missing_parameter": "Pixelcut says our request was missing a parameter",
    "invalid_parameter": "Pixelcut refused one of the settings",
    "unsupported_content_type": "Pixelcut could not read our request",
    "malformed_image": "Pixelcut could not decode the image",
    "unsupported_image_format": "Pixelcut does not support this image format",
    "file_size_too_large": "Pixelcut says the file is too large (25 MB at most)",
    "resolution_too_high": "Pixelcut says the image is too large for this scale",
    "unknown_foreground": "Pixelcut could not find the subject of the image",
}


class PixelcutProvider(HttpProvider):
    slug = "pixelcut"
    name = "Pixelcut"
    summary = (
        "Quick and sharp for product shots and graphics, ready in seconds. Keeps "
        "transparent backgrounds."
    )
    default_base_url = "https://api.developer.pixelcut.ai"
    options = (Option("scale", "Scale", default=2, choices=((2, "2x"), (4, "4x"))),)

    def output_size(self, image, options):
        return image.width * options["scale"], image.height * options["scale"]

    def check(self, image, options):
        scale = options["scale"]
        side = MAX_INPUT_SIDE[scale]
        if image.size_bytes > MAX_INPUT_BYTES:
            raise Refusal("Pixelcut takes files up to 25 MB.", "file_size_too_large")
        if image.width < MIN_SIDE or image.height < MIN_SIDE:
            raise Refusal("Pixelcut needs at least 64x64 pixels.", "resolution_too_low")
        if image.width > side or image.height > side:
            raise Refusal(
                f"Pixelcut takes at most {side}x{side} pixels at {scale}x; this image is "
                f"{image.width}x{image.height}."
                + (" Try 2x, which takes up to 3000x3000." if scale == 4 else ""),
                "resolution_too_high",
            )
        # With the per-scale input limits above this cannot trigger today (3000 * 2 and
        # 1500 * 4 are both 6000); it stays as the document's own rule, in case the
        # input limits are ever raised.
        width, height = self.output_size(image, options)
        if width > MAX_OUTPUT_SIDE or height > MAX_OUTPUT_SIDE:
            raise Refusal(
                f"Pixelcut's results are at most {MAX_OUTPUT_SIDE}x{MAX_OUTPUT_SIDE}; "
                f"{scale}x would make {width}x{height}.",
                "resolution_too_high",
            )

    # --- wire contract ------------------------------------------------------------------
    async def submit(self, job, http):
        with job.input_file.open("rb") as stream:
            data = stream.read()
        filename = posixpath.basename(job.input_file.name)  # our random name, not the user's
        request = httpx.Request(
            "POST",
            self.url(UPSCALE_PATH),
            # JSON answer (a result link) rather than image/*: the download then goes
            # through the one door with its size cap and deadline.
            headers={"X-API-KEY": self.api_key, "Accept": "application/json"},
            data={"scale": str(job.options["scale"])},
            files={"image": (filename, data, CONTENT_TYPES[job.input_format])},
        )
        response = await jobs_http.send(http, request, self.name)
        if response.status_code != 200:
            raise self._error(response)
        if response.headers.get("Content-Type", "").startswith("image/"):
            return Finished(content=response.content)  # answered with the bytes after all
        try:
            url = response.json()["result_url"]
        except (ValueError, KeyError, TypeError):
            url = ""
        if not isinstance(url, str) or not url:
            # It did the work (and may have charged): not retried, to avoid a second charge.
            raise ProviderError(
                "bad_response", "Pixelcut answered without a link to the result.", status=200
            )
        return Finished(url=url)

    async def poll(self, job, http):
        # Never called: a sync job goes straight to fetching. An expired result link
        # therefore fails the job (`result_expired`): there is no fresh link to ask for.
        raise ProviderError(
            "no_status_endpoint",
            "Pixelcut answers each upscale at once and has no status endpoint to check.",
        )

    def webhook_hint(self, data: dict) -> str:
        return "ignored: Pixelcut sends no webhooks"

    def _error(self, response: httpx.Response) -> ProviderError:
        """The ProviderError for a non-200 answer, worded from Pixelcut's error body."""
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        code = str(body.get("error_code") or "")
        said = str(body.get("error") or "").strip()
        status = response.status_code
        if status == 401:
            code = code or "invalid_auth_token"
            message = (
                f"Pixelcut refused the API key ({code}). An admin needs to check PIXELCUT_API_KEY."
            )
        elif status == 403:
            code = code or "insufficient_api_credits"
            message = (
                f"Pixelcut says the account has no credits left ({code}). "
                "An admin needs to top up the Pixelcut account."
            )
        elif status == 400:
            code = code or "bad_request"
            plain = PLAIN_400.get(code, "Pixelcut refused the image")
            message = f"{plain} ({code}{': ' + said if said else ''})."
        else:  # 429 and 5xx become retryable in status_error; anything else is final
            message = f"{said} ({code})." if said and code else f"{said}." if said else ""
        return jobs_http.status_error(response, self.name, code, message)
