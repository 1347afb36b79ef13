"""Start-up self-check: do the addresses providers use to reach us answer?

Sandbox jobs and webhooks reach the portal at PUBLIC_BASE_URL. When it points somewhere
else (the portal moved to another port, say), every sandbox job failed after its
retries with "Could not connect", and nothing said why. `manage.py serve` runs this once
its web server answers: a GET of PUBLIC_BASE_URL/healthz/live and of each enabled
sandbox's base URL. What does not answer is logged as one WARNING line and kept as the
Heartbeat "self-check", which the providers page shows as a banner with its time.
"""

import logging
import time
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.conf import settings
from django.utils import timezone

log = logging.getLogger(__name__)
NAME = "self-check"  # the Heartbeat row
TIMEOUT = 5.0  # seconds for each address


def shown(url: str) -> str:
    """A URL fit for a log line or a page: scheme, host, port and path only (no
    user:password@, no query string that might carry a key)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def targets() -> list[tuple[str, str]]:
    """(what, url) pairs to try: our own address, then each enabled sandbox whose base
    URL is not under it already (a sandbox set to its own base URL)."""
    from jobs.providers import all_providers

    ours = settings.PUBLIC_BASE_URL
    found = [("PUBLIC_BASE_URL", f"{ours}/healthz/live")]
    for provider in all_providers():
        if provider.is_sandbox and provider.available:
            base = provider.base_url
            if not base.startswith(f"{ours}/"):
                found.append((f"{provider.name} sandbox", f"{base}/"))
    return found


def answers(http: httpx.Client, what: str, url: str) -> bool:
    try:
        response = http.get(url)
    except httpx.HTTPError:
        return False
    if what == "PUBLIC_BASE_URL":
        return response.status_code == 200  # our /healthz/live: the database answers too
    return response.status_code < 500  # any answer: something listens there


def run() -> dict:
    """Try every target, log one WARNING if any is silent, record the result."""
    from jobs.models import Heartbeat

    # Not the HTTP door (jobs.http): the door refuses private addresses because provider
    # traffic follows addresses that came from outside. These are our own, from
    # settings, and in development they are 127.0.0.1 by design. Still: a timeout, no
    # redirects, no proxy from the environment.
    failing = []
    with httpx.Client(timeout=TIMEOUT, follow_redirects=False, trust_env=False) as http:
        for what, url in targets():
            if not answers(http, what, url):
                failing.append({"what": what, "url": shown(url)})
    ours = shown(settings.PUBLIC_BASE_URL)
    for failed in failing:
        if failed["what"] == "PUBLIC_BASE_URL":
            log.warning(
                "PUBLIC_BASE_URL %s does not answer: sandbox jobs and webhooks will fail. "
                "Set PUBLIC_BASE_URL to where this portal listens.",
                ours,
            )
        else:
            log.warning(
                "%s address %s does not answer: its jobs will fail.", failed["what"], failed["url"]
            )
    result = {"ok": not failing, "failing": failing, "public_base_url": ours}
    Heartbeat.objects.update_or_create(
        name=NAME, defaults={"beat_at": timezone.now(), "detail": result}
    )
    return result


def local_url(addrport: str) -> str:
    """Where `runserver <addrport>` can be reached from this machine."""
    host, _, port = addrport.rpartition(":")
    host = host or "127.0.0.1"
    host = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]", "::": "[::1]"}.get(host, host)
    return f"http://{host}:{port}"


def wait_until_listening(url: str, seconds: float = 60.0) -> bool:
    """Whether `url` answers within `seconds` (the web server is starting up)."""
    deadline = time.monotonic() + seconds
    with httpx.Client(timeout=TIMEOUT, trust_env=False) as http:
        while time.monotonic() < deadline:
            try:
                http.get(f"{url}/healthz/live")
                return True
            except httpx.HTTPError:
                time.sleep(0.5)  # the server is not up yet
    return False


def when_listening(addrport: str) -> dict | None:
    """Wait for our web server at `addrport` to answer, then check; None if it never
    answered or the check itself broke (logged: a check must never stop the portal)."""
    from django.db import connection

    try:
        if wait_until_listening(local_url(addrport)):
            return run()
        log.warning("The web server at %s did not answer: no start-up self-check.", addrport)
    except Exception:  # noqa: BLE001 - see the docstring
        log.exception("The start-up self-check failed")
    finally:
        connection.close()  # this thread's own connection
    return None


def latest():
    """The last self-check (a Heartbeat row) or None, for the providers page."""
    from jobs.models import Heartbeat

    return Heartbeat.objects.filter(name=NAME).first()
