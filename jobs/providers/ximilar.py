"""Ximilar Upscaler (doc 003): async request, polled at /v2/request/{id} or webhook.

Ximilar's API is Django REST Framework: errors are `{"detail": "..."}` or, for a body
that fails validation, `{"<field>": ["...", ...]}`; neither carries an error code, so
our codes are DRF's own names for the statuses (`authentication_failed`, `throttled`...).
"""

import base64
from datetime import datetime, timedelta
from itertools import pairwise
from urllib.parse import quote

import httpx
from django.utils.crypto import salted_hmac

from jobs.http import origin, send, status_error
from jobs.providers.base import (
    KEEP_TRANSPARENCY_HELP,
    KEEP_TRANSPARENCY_LABEL,
    Failed,
    Finished,
    HttpProvider,
    Option,
    ProviderError,
    Running,
    fits_inline,
)

ENDPOINTS = {2: "upscale_2x", 4: "upscale_4x", 8: "upscale_8x"}
REQUEST_PATH = "/account/v2/request"
PENDING_STATES = ("CREATED", "PROCESSING")  # doc; anything unknown is also waited on
FAILED_STATES = ("ERROR", "FAILED")  # not in the doc: INDEX.md says treat them as failure
# DRF's default codes for the statuses Ximilar answers (its bodies carry no code).
ERROR_CODES = {
    400: "invalid",
    401: "authentication_failed",
    402: "payment_required",
    403: "permission_denied",
    404: "not_found",
    429: "throttled",
}
NOT_AUTHENTICATED = "Authentication credentials were not provided."  # DRF's text
# Assumption: the doc gives no request size. Our sandbox takes 30 MB, and so do we: an
# image whose `_base64` would not fit (a 25 MB upload is ~34 MB as base64) goes as a
# signed link to our copy in `_url` instead, which Ximilar fetches.
INLINE_MAX_BYTES = 30 * 1024 * 1024
# Our mark on the one record we send, so that after a worker died before saving the
# request's id we can recognise our request in Ximilar's list of all requests. Assumption
# (doc 003 does not say it): Ximilar keeps a record's own fields and echoes them back in
# `request.records`, as its API does with records generally; no leading underscore, which
# marks Ximilar's own fields (`_url`, `_base64`, `_status`...).
MARKER_FIELD = "portal_job"
# `GET /account/v2/request`, "List of all requests" in doc 003, which shows no answer.
# Assumed: DRF's paginated list, {"count", "next", "previous", "results"}, each result
# shaped like GET /v2/request/{id}. We follow `next` (on Ximilar's own origin only) for at
# most FIND_MAX_PAGES pages. Where the list comes newest first (checked on each page from
# `created`), a page ending before our submit (less CLOCK_SKEW) ends the search; in any
# other order only the end of the list does, and a list longer than we search leaves the
# job "unknown", never sent again.
FIND_MAX_PAGES = 10
CLOCK_SKEW = timedelta(minutes=2)  # between our clock and Ximilar's `created`


class XimilarProvider(HttpProvider):
    slug = "ximilar"
    name = "Ximilar"
    summary = (
        "Good for product photos and old, compressed pictures: can clean up blocky "
        "JPEG patches while it enlarges."
    )
    default_base_url = "https://api.ximilar.com"
    key_setting = "XIMILAR_API_TOKEN"
    supports_webhook = True
    supports_lookup = True
    options = (
        Option("scale", "Scale", default=2, choices=((2, "2x"), (4, "4x"), (8, "8x"))),
        Option(
            "mode",
            "Mode",
            default="artifact_removal",
            choices=(
                ("artifact_removal", "Artifact removal"),
                ("ironed_out", "Ironed out (smoother)"),
                ("high_fidelity", "High fidelity"),
            ),
        ),
        Option(
            "model_type",
            "Model",
            default="classic",
            choices=(("classic", "Classic"), ("gan", "GAN (more detail, dearer)")),
        ),
        Option(
            "output_format",
            "Format",
            default="auto",
            # Doc: with no image_format Ximilar returns PNG for images with alpha and
            # JPEG otherwise, so "auto" is not "same as input" for an opaque PNG or WebP.
            choices=(
                ("auto", KEEP_TRANSPARENCY_LABEL),
                ("jpg", "JPEG"),
                ("png", "PNG"),
                ("webp", "WebP"),
            ),
            help=KEEP_TRANSPARENCY_HELP,
        ),
    )

    def output_size(self, image, options):
        return image.width * options["scale"], image.height * options["scale"]

    def check(self, image, options):
        if not fits_inline(image.size_bytes, INLINE_MAX_BYTES) and not self.input_links_reachable:
            raise self.unreachable_link_refusal(image, INLINE_MAX_BYTES)

    # --- wire contract -----------------------------------------------------------------
    def _headers(self) -> dict:
        return {"Authorization": f"Token {self.api_key}", "Accept": "application/json"}

    async def submit(self, job, http):
        options = {o.name: job.options.get(o.name, o.default) for o in self.options}
        if fits_inline(job.input_bytes, INLINE_MAX_BYTES):
            # The bytes themselves, so no public input URL is needed.
            with job.input_file.open("rb") as stream:
                record = {"_base64": base64.b64encode(stream.read()).decode("ascii")}
        else:
            from jobs import inbound  # not at the top: inbound imports the provider registry

            record = {"_url": inbound.input_url(job)}  # too big to inline: Ximilar fetches it
        record[MARKER_FIELD] = marker(job)
        body = {
            "type": "upscaler",
            "endpoint": ENDPOINTS[options["scale"]],
            "records": [record],  # exactly one
            "mode": options["mode"],
            "model_type": options["model_type"],
        }
        if options["output_format"] != "auto":  # absent = Ximilar's own choice (doc)
            body["image_format"] = options["output_format"]
        if self.webhooks_enabled:
            body["webhook"] = {"endpoint": self.webhook_url(job), "headers": {}}
        request = httpx.Request("POST", self.url(REQUEST_PATH), headers=self._headers(), json=body)
        response = await send(http, request, self.name)
        if not response.is_success:
            raise self._error(response, submitting=True)
        task_id = _answer(response, self.name).get("id")
        if not task_id:
            raise ProviderError("bad_answer", f"{self.name} accepted the job but gave no id.")
        return Running(str(task_id))

    async def poll(self, job, http):
        task_id = job.provider_task_id
        url = self.url(f"{REQUEST_PATH}/{quote(task_id, safe='')}")
        response = await send(http, httpx.Request("GET", url, headers=self._headers()), self.name)
        if not response.is_success:
            raise self._error(response)
        answer = _answer(response, self.name)
        status = str(answer.get("status", "")).upper()
        record = _first_record(answer)
        said = (record.get("_status") or {}).get("text") or "no reason given"
        if status in FAILED_STATES:
            return Failed(status.lower(), f"{self.name} could not upscale this image ({said}).")
        if status != "DONE":
            return Running(task_id)
        # DONE is about the request; each record has its own outcome.
        if _record_code(record) >= 400:
            return Failed("record_error", f"{self.name} could not upscale this image ({said}).")
        if not record.get("_upscaled_image_url"):
            return Failed("no_result", f"{self.name} finished but gave no link to the result.")
        return Finished(url=record["_upscaled_image_url"], task_id=task_id)

    async def find_task(self, job, http):
        want = marker(job)
        since = (job.submitted_at or job.created_at) - CLOCK_SKEW
        home, url = origin(self.base_url), self.url(REQUEST_PATH)
        for _page in range(FIND_MAX_PAGES):
            request = httpx.Request("GET", url, headers=self._headers())
            response = await send(http, request, self.name)
            if not response.is_success:
                raise self._error(response)
            page = _answer(response, self.name)
            results = page.get("results")
            if not isinstance(results, list):
                raise ProviderError("bad_answer", f"{self.name}'s list of requests was unreadable.")
            created = []
            for item in (r for r in results if isinstance(r, dict)):
                if item.get("id") and want in _markers(item):
                    return Running(str(item["id"]))
                created.append(_when(item.get("created")))
            newest_first = all(a and b and a >= b for a, b in pairwise(created))
            if created and newest_first and created[-1] and created[-1] < since:
                return None  # every request made since our submit was on these pages
            url = page.get("next")
            if not url:
                return None  # the whole list
            if not isinstance(url, str) or _origin(url) != home:
                raise ProviderError(
                    "bad_answer", f"{self.name}'s list of requests pointed somewhere else."
                )
        raise ProviderError(
            "unknown", f"{self.name} lists more requests than we searched ({FIND_MAX_PAGES} pages)."
        )

    def webhook_hint(self, data: dict) -> str:
        status = data.get("status")
        return f"says: {status}" if isinstance(status, str) else "unreadable body"

    def _error(self, response: httpx.Response, submitting=False) -> ProviderError:
        status = response.status_code
        detail = _detail(response)
        code = ERROR_CODES.get(status, "server_error" if status >= 500 else f"http_{status}")
        if status == 401:
            code = "not_authenticated" if detail == NOT_AUTHENTICATED else code
            message = (
                f"{self.name} refused the API token ({detail or status}). "
                "An admin needs to check XIMILAR_API_TOKEN."
            )
        elif status in (402, 403):
            message = (
                f"{self.name} refused access ({detail or status}). An admin needs to check "
                "the Ximilar account's credits and permissions."
            )
        elif status == 404 and submitting:  # the request path itself was not found
            message = (
                f"{self.name} answered {detail or 'Not found'} for a new job. "
                "An admin needs to check XIMILAR_BASE_URL."
            )
        elif status == 404:
            message = f"{self.name} no longer knows this job ({detail or status})."
        elif status == 400:
            message = f"{self.name} refused the request ({detail or status})."
        else:
            message = detail  # 429/5xx: status_error words it and the job is retried
        return status_error(response, self.name, code, message)


def marker(job) -> str:
    """Unique to the job and to this portal (SECRET_KEY), should several portals share
    one Ximilar account; it tells Ximilar nothing about the job."""
    return salted_hmac(
        "jobs.providers.ximilar.marker", f"{job.pk}:{job.webhook_token}"
    ).hexdigest()[:32]


def _markers(item: dict) -> set:
    """Our marks on the records of one request of the list, as sent and as answered."""
    found = set()
    for part in (item.get("request"), item.get("response")):
        records = part.get("records") if isinstance(part, dict) else None
        for record in records if isinstance(records, list) else ():
            if isinstance(record, dict) and isinstance(record.get(MARKER_FIELD), str):
                found.add(record[MARKER_FIELD])
    return found


def _when(text) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None


def _origin(url: str):
    try:
        return origin(url)
    except (httpx.InvalidURL, TypeError):
        return None


def _answer(response: httpx.Response, who: str) -> dict:
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise ProviderError("bad_answer", f"{who} answered with something we could not read.")
    return answer


def _detail(response: httpx.Response) -> str:
    """DRF's error body in one line: its `detail`, or `field: message` pairs."""
    try:
        body = response.json()
    except ValueError:
        return ""  # e.g. an HTML error page from a proxy: not worth showing
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])[:300]
    if isinstance(body, dict):
        parts = [
            f"{field}: {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for field, v in body.items()
        ]
        return "; ".join(parts)[:300]
    if isinstance(body, list):
        return " ".join(map(str, body))[:300]
    return ""


def _first_record(answer: dict) -> dict:
    """The one record we sent, as it came back (an empty dict while there is none)."""
    response = answer.get("response")
    records = response.get("records") if isinstance(response, dict) else None
    if isinstance(records, list) and records and isinstance(records[0], dict):
        return records[0]
    return {}


def _record_code(record: dict) -> int:
    try:
        return int((record.get("_status") or {}).get("code", 200))
    except (TypeError, ValueError):
        return 200
