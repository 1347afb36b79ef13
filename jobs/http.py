"""One door for outbound HTTP: every adapter talks through here.

A timeout on every call, no automatic redirects, errors turned into `ProviderError`s
that say whether they may be retried and whether the request may have reached the
provider (which decides whether a submit can be sent again). Results are downloaded
with a byte cap, a total deadline, https only, and private addresses refused except the
configured provider host (that is how the sandboxes on 127.0.0.1 are reached). The
sandboxes' own fetches and webhooks come through here too, allowed our own origin only.
"""

import asyncio
import functools
import ipaddress
import random
import socket
import ssl
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin

import httpx
from django.conf import settings
from django.utils import timezone

from jobs.errors import ProviderError

RETRYABLE_STATUS = {429, 500, 502, 503, 504}
MAX_REDIRECTS = 3


@functools.cache
def tls_context() -> ssl.SSLContext:
    # Loading the CA bundle costs ~20 ms of CPU: once per process, not once per task.
    return httpx.create_ssl_context()


def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        verify=tls_context(),
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


# --- Reaching addresses that came from outside -----------------------------------------
# Result links come from providers, sandbox inputs and callbacks from API callers: an
# address is checked before we connect, and the connection goes to the very address that
# passed the check (the request is pinned to the vetted IP, with the name kept for the
# Host header and TLS), so a name that resolves differently a moment later (DNS
# rebinding) cannot lead us into a private network.
@dataclass(frozen=True)
class Rules:
    """Where a fetch may go. `trusted_hosts` may be private and plain http (the
    configured provider host); so may `trusted_origins`, (scheme, host, port) triples
    from `origin()`, but only on that scheme and port: the sandboxes trust our own
    PUBLIC_BASE_URL so, as trusting its host would also open every other service on it
    (6379, 5432...). Other hosts must be public https addresses, and only when `public`
    is true."""

    trusted_hosts: frozenset = frozenset()
    public: bool = True
    trusted_origins: frozenset = frozenset()


DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL, the port filled in when it is the default one."""
    target = url if isinstance(url, httpx.URL) else httpx.URL(url)
    return target.scheme, target.host, target.port or DEFAULT_PORTS.get(target.scheme, 0)


def _refused(message: str) -> ProviderError:
    return ProviderError("bad_result_url", message)


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def callback_rules() -> Rules:
    """Where an address an API caller gave us (its webhook URL) may lead: public https
    addresses only; with the sandboxes on (development, the tests) this machine's
    loopback too, plain http included, so a receiver can be tried out locally."""
    trusted = LOOPBACK_HOSTS if settings.SANDBOX_ENABLED else frozenset()
    return Rules(trusted_hosts=trusted, public=True)


def is_public(address) -> bool:
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


async def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` stands for (one lookup: the caller connects to one of them)."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise ProviderError(
            "result_unreachable", f"The host {host} could not be found.", retryable=True
        ) from None
    return list(dict.fromkeys(info[4][0] for info in infos))


async def pin(url: str, rules: Rules) -> tuple[httpx.URL, dict, dict]:
    """(URL to the vetted address, headers, extensions) for a request to `url`, or a
    ProviderError saying why we will not go there."""
    try:
        target = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise _refused("The address is not a valid URL.") from None
    host = target.host
    if target.scheme not in ("http", "https") or not host:
        raise _refused("The address is not http(s).")
    port = target.port or DEFAULT_PORTS[target.scheme]
    trusted = host in rules.trusted_hosts or (target.scheme, host, port) in rules.trusted_origins
    if not trusted and not rules.public:
        raise _refused("We only fetch from our own address here.")
    if not trusted and target.scheme != "https":
        raise _refused("The address is not https.")
    addresses = await resolve(host, port)
    if not trusted and not all(is_public(ipaddress.ip_address(a)) for a in addresses):
        raise _refused("The address is a private network address; we refused to connect to it.")
    if not addresses:
        raise ProviderError("result_unreachable", f"The host {host} could not be found.")
    headers = {"Host": target.netloc.decode("ascii")}
    extensions = {"sni_hostname": host} if target.scheme == "https" else {}
    return target.copy_with(host=addresses[0]), headers, extensions


@asynccontextmanager
async def open_pinned(http: httpx.AsyncClient, method: str, url: str, rules: Rules, **kwargs):
    """A streamed response from `url` over a connection pinned to its vetted address.
    Redirects are followed by hand (GET only), each hop checked again."""
    extra_headers = kwargs.pop("headers", None) or {}
    for _hop in range(MAX_REDIRECTS + 1):
        pinned, headers, extensions = await pin(url, rules)
        request = http.build_request(
            method,
            pinned,
            headers={**extra_headers, **headers},
            extensions=extensions,
            **kwargs,
        )
        response = await http.send(request, stream=True)
        try:
            if response.is_redirect and method == "GET":
                url = urljoin(url, response.headers.get("Location", ""))
                continue  # the next address is checked again
            yield response
            return
        finally:
            await response.aclose()
    raise _refused("The link redirected too many times.")


async def read_capped(response: httpx.Response, max_bytes: int) -> bytes:
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


async def fetch(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    rules: Rules,
    *,
    max_bytes: int,
    deadline: float,
    **kwargs,
) -> tuple[int, bytes]:
    """(status, body) of one pinned request, the body capped at `max_bytes`."""
    try:
        async with asyncio.timeout(deadline):
            async with open_pinned(http, method, url, rules, **kwargs) as response:
                return response.status_code, await read_capped(response, max_bytes)
    except TimeoutError:
        raise ProviderError("timeout", "The address took too long to answer.") from None
    except httpx.TransportError:
        raise ProviderError(
            "unreachable", "The address could not be reached.", retryable=True
        ) from None


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
    rules = Rules(trusted_hosts=frozenset(allowed_hosts), public=True)
    try:
        async with asyncio.timeout(deadline):
            async with open_pinned(http, "GET", url, rules) as response:
                if response.status_code in (401, 403, 404, 410):
                    raise ProviderError(
                        "result_expired",
                        f"The result link from {who} has expired or is gone.",
                        status=response.status_code,
                    )
                if response.status_code >= 400:
                    raise status_error(response, who, "result_download_failed", "")
                return await read_capped(response, max_bytes)
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
