"""One door for outbound HTTP: every adapter talks through here.

A timeout on every call, no automatic redirects, errors turned into `ProviderError`s
that say whether they may be retried and whether the request may have reached the
provider (which decides whether a submit can be sent again). Results are downloaded
with a byte cap, a total deadline, https only, and private addresses refused except the
configured provider host (that is how the sandboxes on 127.0.0.1 are reached).
"""

import asyncio
import ipaddress
import random
import socket
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

import httpx
from django.conf import settings
from django.utils import timezone

from jobs.errors import ProviderError

RETRYABLE_STATUS = {429, 500, 502, 503, 504}
MAX_REDIRECTS = 3


def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.PROVIDER_TIMEOUT, connect=10.0),
        follow_redirects=False,
        headers={"User-Agent": "UpscalerPortal/1.0"},
        limits=httpx.Limits(max_connections=settings.TRACKER_CONCURRENCY + 8),
    )


def retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(raw) - timezone.now()).total_seconds())
    except (TypeError, ValueError):
        return None


def backoff(attempt: int, hint: float | None = None, base=1.0, cap=60.0) -> float:
    """Exponential backoff with jitter; never sooner than the provider's Retry-After."""
    delay = min(cap, base * 2 ** max(attempt - 1, 0)) * random.uniform(0.5, 1.0)
    return max(delay, hint or 0.0)


async def send(http: httpx.AsyncClient, request: httpx.Request, who: str) -> httpx.Response:
    """Send one request; transport failures become ProviderErrors."""
    try:
        return await http.send(request)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout):
        # Nothing reached the provider: safe to send again.
        raise ProviderError(
            "unreachable", f"Could not connect to {who}.", retryable=True, maybe_received=False
        ) from None
    except httpx.TimeoutException:
        raise ProviderError(
            "timeout", f"{who} did not answer in time.", retryable=True, maybe_received=True
        ) from None
    except httpx.TransportError:
        raise ProviderError(
            "connection_error",
            f"The connection to {who} broke off.",
            retryable=True,
            maybe_received=True,
        ) from None


def status_error(response: httpx.Response, who: str, code: str, message: str) -> ProviderError:
    """A ProviderError for an HTTP error answer, retryable when the status says so."""
    status = response.status_code
    if status in RETRYABLE_STATUS:
        plain = "is busy (rate limited)" if status == 429 else f"had a server error ({status})"
        return ProviderError(
            code or ("rate_limited" if status == 429 else "provider_error"),
            f"{who} {plain}: {message}" if message else f"{who} {plain}.",
            retryable=True,
            retry_after=retry_after(response),
            maybe_received=False,  # it answered: it did not take the job
            status=status,
        )
    return ProviderError(
        code or f"http_{status}", message or f"{who} answered {status}.", status=status
    )


# --- Downloading results -------------------------------------------------------------
def _host_allowed(host: str, allowed_hosts) -> bool:
    return host in allowed_hosts


async def _check_address(url: str, allowed_hosts) -> None:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if _host_allowed(host, allowed_hosts):
        if parts.scheme not in ("http", "https"):
            raise ProviderError("bad_result_url", "The result address is not http(s).")
        return
    if parts.scheme != "https":
        raise ProviderError(
            "bad_result_url", "The provider gave a result address that is not https."
        )
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, parts.port or 443)
    except socket.gaierror:
        raise ProviderError(
            "result_unreachable", f"The result host {host} could not be found.", retryable=True
        ) from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise ProviderError(
                "bad_result_url",
                "The provider pointed us at a private network address; we refused to fetch it.",
            )


async def download(
    http: httpx.AsyncClient,
    url: str,
    *,
    allowed_hosts,
    who: str,
    max_bytes: int | None = None,
    deadline: float | None = None,
) -> bytes:
    max_bytes = max_bytes or settings.RESULT_MAX_BYTES
    deadline = deadline or settings.RESULT_DEADLINE
    try:
        async with asyncio.timeout(deadline):
            for _hop in range(MAX_REDIRECTS + 1):
                await _check_address(url, allowed_hosts)
                async with http.stream("GET", url) as response:
                    if response.is_redirect:
                        url = urljoin(url, response.headers.get("Location", ""))
                        continue  # the next address is checked again
                    if response.status_code in (401, 403, 404, 410):
                        raise ProviderError(
                            "result_expired",
                            f"The result link from {who} has expired or is gone.",
                            status=response.status_code,
                        )
                    if response.status_code >= 400:
                        raise status_error(response, who, "result_download_failed", "")
                    declared = int(response.headers.get("Content-Length") or 0)
                    if declared > max_bytes:
                        raise _too_big(max_bytes)
                    chunks, total = [], 0
                    async for chunk in response.aiter_bytes():
                        total += len(chunk)
                        if total > max_bytes:
                            raise _too_big(max_bytes)
                        chunks.append(chunk)
                    return b"".join(chunks)
            raise ProviderError("bad_result_url", "The result link redirected too many times.")
    except TimeoutError:
        raise ProviderError(
            "result_timeout", f"Downloading the result from {who} took too long.", retryable=True
        ) from None
    except httpx.TransportError:
        raise ProviderError(
            "result_unreachable", f"The result download from {who} broke off.", retryable=True
        ) from None


def _too_big(max_bytes: int) -> ProviderError:
    return ProviderError(
        "result_too_large", f"The result is larger than {max_bytes // (1024 * 1024)} MB."
    )
