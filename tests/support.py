"""Small helpers the provider contract tests share."""

import ssl
import sys
import time
from http.server import ThreadingHTTPServer

from django.conf import settings

# The key every sandbox accepts on this install (derived from SECRET_KEY).
SANDBOX_KEY = settings.SANDBOX_API_KEY


def wait_until(condition, timeout=10.0, message="timed out waiting"):
    """Wait for something another thread does (a webhook delivery, the live server, a slow
    sandbox answer): poll `condition()` until it holds, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.05)


def timeline(job) -> str:
    """The job's event details, one a line, in order."""
    return "\n".join(job.events.values_list("detail", flat=True))


def states(job) -> list[str]:
    """The timeline's states in order, repeats in a row folded into one."""
    seen = []
    for state in job.events.order_by("at", "pk").values_list("state", flat=True):
        if not seen or seen[-1] != state:
            seen.append(state)
    return seen


class QuietHTTPServer(ThreadingHTTPServer):
    """A loopback test server that stays silent when the client hangs up first (what a
    size cap, a timeout or a refused TLS handshake in the test does on purpose): the
    traceback socketserver prints then is noise in the test output. Anything else still
    prints."""

    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError, TimeoutError)):
            super().handle_error(request, client_address)
