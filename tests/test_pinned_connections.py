"""DNS rebinding: the address that passed the check is the address we connect to.

A resolver answers "public" for the first lookup of a name and a private address for any
later one. Over real TLS (a test CA from trustme) the download must reach the first
address, with the name kept for SNI, the certificate and the Host header, and never
open a connection to the second."""

import asyncio
import http.server
import ipaddress
import socket
import ssl
import threading

import httpx
import pytest
import trustme

from jobs import http as door
from jobs.errors import ProviderError
from tests.support import QuietHTTPServer

NAME = "images.example.test"
VETTED, REBOUND = "127.0.0.1", "127.0.0.2"  # stand-ins for a public and a private address


class Recorder(http.server.BaseHTTPRequestHandler):
    hosts: list

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.hosts.append(self.headers["Host"])
        body = b"PNGDATA"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def tls_site():
    """An https server for NAME on VETTED, and a listener on REBOUND, same port, that
    records every connection made to it."""
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(NAME).configure_cert(server_ctx)
    hosts = []
    handler = type("Handler", (Recorder,), {"hosts": hosts})
    site = QuietHTTPServer((VETTED, 0), handler)
    site.socket = server_ctx.wrap_socket(site.socket, server_side=True)
    port = site.server_address[1]
    trap = socket.create_server((REBOUND, port))
    trapped = []

    def catch():
        trap.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, addr = trap.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            trapped.append(addr)
            conn.close()

    stop = threading.Event()
    threads = [
        threading.Thread(target=site.serve_forever, daemon=True),
        threading.Thread(target=catch, daemon=True),
    ]
    for t in threads:
        t.start()
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    yield {"port": port, "hosts": hosts, "trapped": trapped, "verify": client_ctx}
    stop.set()
    site.shutdown()
    site.server_close()
    trap.close()


@pytest.fixture
def rebinding_resolver(monkeypatch):
    """NAME resolves to VETTED once, then to REBOUND; VETTED counts as public."""
    real = socket.getaddrinfo
    lookups = []

    def resolve(host, port, *args, **kwargs):
        if host == NAME:
            lookups.append(host)
            address = VETTED if len(lookups) == 1 else REBOUND
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    monkeypatch.setattr(
        ipaddress.IPv4Address, "is_global", property(lambda self: str(self) == VETTED)
    )
    return lookups


def download(url, verify):
    async def go():
        async with httpx.AsyncClient(verify=verify) as client:
            return await door.download(client, url, allowed_hosts=set(), who="Acme")

    return asyncio.run(go())


def test_the_connection_goes_to_the_address_that_was_checked(tls_site, rebinding_resolver):
    url = f"https://{NAME}:{tls_site['port']}/result.png"
    assert download(url, tls_site["verify"]) == b"PNGDATA"
    assert tls_site["trapped"] == []  # nothing ever connected to the rebound address
    assert len(rebinding_resolver) == 1  # one lookup: the one that was checked
    # The name travels with the pinned connection: TLS verified it, and the Host header.
    assert tls_site["hosts"] == [f"{NAME}:{tls_site['port']}"]


def test_a_rebound_private_answer_is_refused_before_connecting(tls_site, rebinding_resolver):
    rebinding_resolver.append("an earlier lookup")  # the next answer is the private one
    url = f"https://{NAME}:{tls_site['port']}/result.png"
    with pytest.raises(ProviderError) as err:
        download(url, tls_site["verify"])
    assert err.value.code == "bad_result_url"
    assert tls_site["trapped"] == [] and tls_site["hosts"] == []


def test_the_certificate_is_checked_against_the_name_not_the_address(tls_site, rebinding_resolver):
    # Same server, but no CA trust: the pinned connection still verifies TLS.
    url = f"https://{NAME}:{tls_site['port']}/result.png"
    with pytest.raises(ProviderError) as err:
        download(url, ssl.create_default_context())
    assert err.value.code == "result_unreachable"
