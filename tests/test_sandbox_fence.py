"""The sandboxes are fenced (issue #7): mounted only in sandbox mode, keyed by a secret of
this install, reaching the network only through the one HTTP door and only to the
portal's own address, one error text for every failed fetch, bodies capped before they
are read, and a provider with no key unavailable when there is no sandbox to talk to."""

import ast
import asyncio
import base64
import http.client
import http.server
import io
import json
import os
import secrets
import socket
import struct
import subprocess
import sys
import threading
import zlib
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from django.core.management import CommandError, call_command
from django.test import RequestFactory
from django.urls import get_resolver, resolve

from jobs import http as door
from jobs import intake
from jobs.errors import ProviderError
from jobs.imaging import ImageInfo
from jobs.models import Job
from jobs.providers import Refusal, get_provider
from jobs.sandbox import engine
from jobs.sandbox import pixelcut as pixelcut_sandbox
from jobs.sandbox.models import SandboxTask
from tests.images import image_bytes, png_bomb
from tests.support import SANDBOX_KEY, QuietHTTPServer, timeline

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024
SLUGS = ["pixazo", "pixelcut", "fal", "ximilar", "apixo"]
KEY_SETTINGS = {
    "pixazo": "PIXAZO_API_KEY",
    "pixelcut": "PIXELCUT_API_KEY",
    "fal": "FAL_KEY",
    "ximilar": "XIMILAR_API_TOKEN",
    "apixo": "APIXO_API_KEY",
}
# Each sandbox's submit call: path under /sandbox/<slug>/, auth header, content type.
SUBMITS = {
    "pixazo": (
        "upscaler/v1/crystal-upscaler/generate",
        {"Ocp-Apim-Subscription-Key": SANDBOX_KEY},
        "application/json",
    ),
    "pixelcut": (
        "v1/upscale",
        {"X-API-KEY": SANDBOX_KEY},
        "multipart/form-data; boundary=fence",
    ),
    "fal": (
        "clarityai/crystal-upscaler",
        {"Authorization": f"Key {SANDBOX_KEY}"},
        "application/json",
    ),
    "ximilar": (
        "account/v2/request",
        {"Authorization": f"Token {SANDBOX_KEY}"},
        "application/json",
    ),
    "apixo": (
        "generateTask/image-upscaler",
        {"Authorization": f"Bearer {SANDBOX_KEY}"},
        "application/json",
    ),
}
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


# --- helpers -----------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def connections(monkeypatch):
    """Every address a socket of this process tries to connect to, in order. Only loopback
    is let through: whatever the code under test does, no test here sends a packet off
    this machine (a refused connect is what an unreachable host looks like anyway)."""
    tried = []
    real_connect = socket.socket.connect

    def connect(sock, address):
        host = address[0] if isinstance(address, tuple) else str(address)
        tried.append(host)
        if sock.family in (socket.AF_INET, socket.AF_INET6) and host not in LOOPBACK:
            raise ConnectionRefusedError(f"test guard: no connection to {host}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return tried


class Site(QuietHTTPServer):
    """A small HTTP server on 127.0.0.1 that counts connections and records requests."""

    daemon_threads = True

    def __init__(self, respond):
        self.respond = respond
        self.connections = 0
        self.requests = []  # (method, path, body)
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def verify_request(self, request, client_address):
        self.connections += 1
        return True

    def posts(self) -> list:
        return [r for r in self.requests if r[0] == "POST"]


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self._answer()

    def do_POST(self):  # noqa: N802
        self._answer()

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.requests.append((self.command, self.path, body))
        self.server.respond(self)

    def log_message(self, *args):
        pass


def answer(status=200, body=b"", content_type="application/octet-stream", **headers):
    def respond(handler):
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", headers.pop("length", str(len(body))))
        for name, value in headers.items():
            handler.send_header(name.replace("_", "-"), value)
        handler.end_headers()
        handler.wfile.write(body)

    return respond


def redirect_to(location):
    return answer(302, Location=location)


@contextmanager
def site(respond=None):
    server = Site(respond or answer(404))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def silent_port():
    """A port that takes connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def closed_port() -> int:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


def call(sandbox, slug, body, **extra_headers) -> httpx.Response:
    path, headers, _content_type = SUBMITS[slug]
    if slug == "pixelcut":
        pixelcut_sandbox.forget()  # its 5-a-second limit is not what these tests are about
    return httpx.post(
        f"{sandbox.url}/sandbox/{slug}/{path}",
        json=body,
        headers={**headers, **extra_headers},
        timeout=60,
    )


def input_error(sandbox, slug, url) -> str:
    """What `slug`'s sandbox says when it cannot use the image at `url`, in full."""
    if slug == "pixazo":
        response = call(sandbox, slug, {"image": url, "scale_factor": 2})
        assert response.status_code == 400, response.text
        return response.json()["error"]
    if slug == "pixelcut":
        response = call(sandbox, slug, {"image_url": url, "scale": 2})
        assert response.status_code == 400, response.text
        return json.dumps(response.json())
    if slug == "fal":
        response = call(sandbox, slug, {"image_url": url})
        assert response.status_code == 422, response.text
        return json.dumps(response.json())
    if slug == "ximilar":
        body = {"type": "upscaler", "endpoint": "upscale_2x", "records": [{"_url": url}]}
        response = call(sandbox, slug, body)
        assert response.status_code == 400, response.text
        return json.dumps(response.json())
    # APIXO takes the task and fails it; the failure is in the status answer.
    body = {"request_type": "async", "input": {"image_urls": [url], "resolution": "2k"}}
    response = call(sandbox, slug, body)
    assert response.status_code == 200, response.text
    status = httpx.get(
        f"{sandbox.url}/sandbox/apixo/statusTask/image-upscaler",
        params={"taskId": response.json()["data"]["taskId"]},
        headers=SUBMITS["apixo"][1],
        timeout=10,
    ).json()["data"]
    assert status["state"] == "failed", status
    return f"{status['failCode']}: {status['failMsg']}"


def raw_post(base_url, path, headers, first_bytes=b"") -> tuple[int, bytes]:
    """Send a request head (and the first bytes of its body) over a plain socket, then
    read the answer: a server that waits for the rest of the body never answers."""
    target = httpx.URL(base_url)
    with socket.create_connection((target.host, target.port), timeout=20) as sock:
        head = [f"POST {path} HTTP/1.1", f"Host: {target.host}:{target.port}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + first_bytes)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.read()


def shaped_as(slug, status, raw: bytes) -> bool:
    """Whether an error body is in `slug`'s own shape."""
    body = json.loads(raw)
    if slug == "pixazo":
        return set(body) == {"error"}
    if slug == "pixelcut":
        return set(body) == {"error", "error_code"}
    if slug == "fal":
        return "detail" in body
    if slug == "ximilar":  # DRF: a detail, or a serializer's field errors
        return "detail" in body or all(isinstance(v, list | dict) for v in body.values())
    return body["code"] == status and set(body) == {"code", "message", "data"}


def padded_png(total_bytes: int) -> bytes:
    """A small PNG made `total_bytes` long by private ancillary chunks (which readers
    skip): a file as big as the portal accepts, quick to decode and upscale."""
    png = image_bytes(96, 80)
    pieces, size = [], len(png)
    while size < total_bytes:
        data = b"\0" * min(MB, total_bytes - size - 12)
        chunk = b"prVt" + data
        pieces.append(struct.pack(">I", len(data)) + chunk + struct.pack(">I", zlib.crc32(chunk)))
        size += len(data) + 12
    return png[:-12] + b"".join(pieces) + png[-12:]  # before IEND


# --- the app stands alone ---------------------------------------------------------------
def test_the_sandbox_imports_nothing_from_the_provider_adapters():
    offenders = []
    for path in sorted((ROOT / "jobs" / "sandbox").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            offenders += [
                f"{path.relative_to(ROOT)}: {name}"
                for name in names
                if name == "jobs.providers" or name.startswith("jobs.providers.")
            ]
            if isinstance(node, ast.ImportFrom) and node.module == "jobs":
                offenders += [
                    f"{path.relative_to(ROOT)}: jobs.{a.name}"
                    for a in node.names
                    if a.name == "providers"
                ]
    assert offenders == []


# --- where the sandboxes may reach --------------------------------------------------------
def test_the_door_trusts_an_origin_on_its_own_port_only():
    rules = door.Rules(trusted_origins=frozenset({door.origin("http://127.0.0.1:8000")}))
    seen = []

    def handler(request):
        seen.append(str(request.url))
        return httpx.Response(200, content=b"ok")

    async def fetch(url):
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await door.fetch(client, "GET", url, rules, max_bytes=10, deadline=5)

    assert asyncio.run(fetch("http://127.0.0.1:8000/x")) == (200, b"ok")
    for url in (
        "http://127.0.0.1:6379/",  # another port: a local Redis, say
        "http://127.0.0.1/x",
        "https://127.0.0.1:8000/x",
        "http://10.0.0.1:8000/x",
    ):
        with pytest.raises(ProviderError):
            asyncio.run(fetch(url))
    assert seen == ["http://127.0.0.1:8000/x"]


@pytest.mark.parametrize("slug", SLUGS)
def test_the_sandbox_never_connects_to_a_private_address(sandbox, slug, connections):
    with site(answer(200, image_bytes())) as elsewhere:
        for url in (
            "http://10.0.0.1/a.png",
            "http://169.254.169.254/latest/meta-data/",
            f"{elsewhere.url}/a.png",  # another port on our own host (think 6379, 5432)
        ):
            input_error(sandbox, slug, url)

    assert not {"10.0.0.1", "169.254.169.254"} & set(connections)
    assert elsewhere.connections == 0


@pytest.mark.parametrize("target", ["another port", "metadata service"])
def test_a_redirect_from_our_address_to_a_private_one_is_not_followed(
    sandbox, settings, connections, target
):
    with site(answer(200, image_bytes())) as private:
        location = (
            f"{private.url}/secret.png"
            if target == "another port"
            else "http://169.254.169.254/latest/meta-data/"
        )
        with site(redirect_to(location)) as ours:
            settings.PUBLIC_BASE_URL = ours.url  # the first hop is to our own address
            text = input_error(sandbox, "pixazo", f"{ours.url}/image.png")

    assert [(method, path) for method, path, _ in ours.requests] == [("GET", "/image.png")]
    assert private.connections == 0
    assert "169.254.169.254" not in connections
    assert text == "Invalid image: the image could not be fetched from its URL"


@pytest.mark.parametrize("slug", SLUGS)
def test_every_failed_fetch_reads_the_same(sandbox, settings, monkeypatch, slug):
    # A short deadline, so the silent server is given up on soon.
    monkeypatch.setattr(engine, "FETCH_DEADLINE", 1.0, raising=False)
    ours = settings.PUBLIC_BASE_URL
    texts = {
        "404 at our address": input_error(sandbox, slug, f"{ours}/inputs/nothing/"),
        "refused address": input_error(sandbox, slug, "http://10.0.0.1/a.png"),
    }
    port = closed_port()
    settings.PUBLIC_BASE_URL = f"http://127.0.0.1:{port}"
    texts["closed port"] = input_error(sandbox, slug, f"http://127.0.0.1:{port}/a.png")
    with silent_port() as port:
        settings.PUBLIC_BASE_URL = f"http://127.0.0.1:{port}"
        texts["no answer"] = input_error(sandbox, slug, f"http://127.0.0.1:{port}/a.png")
    with site(answer(200, b"x" * 1000, length=str(40 * MB))) as big:
        settings.PUBLIC_BASE_URL = big.url
        texts["too big"] = input_error(sandbox, slug, f"{big.url}/a.png")

    assert len(set(texts.values())) == 1, texts


# --- webhooks ---------------------------------------------------------------------------
def submit_with_hook(sandbox, slug, hook, image_url) -> httpx.Response:
    inline = image_bytes()
    if slug == "pixazo":
        return call(sandbox, slug, {"image": image_url, "webhook": hook})
    if slug == "fal":
        data_uri = "data:image/png;base64," + base64.b64encode(inline).decode()
        path, headers, _ = SUBMITS["fal"]
        return httpx.post(
            f"{sandbox.url}/sandbox/fal/{path}",
            params={"fal_webhook": hook},
            json={"image_url": data_uri},
            headers=headers,
            timeout=30,
        )
    if slug == "ximilar":
        record = {"_base64": base64.b64encode(inline).decode()}
        body = {"type": "upscaler", "endpoint": "upscale_2x", "records": [record]}
        return call(sandbox, slug, {**body, "webhook": {"endpoint": hook}})
    body = {
        "request_type": "callback",
        "callback_url": hook,
        "input": {"image_urls": [image_url], "resolution": "2k"},
    }
    return call(sandbox, slug, body)


@pytest.mark.parametrize("slug", ["pixazo", "fal", "ximilar", "apixo"])
@pytest.mark.parametrize("where", ["another address", "our address outside /hooks/"])
def test_a_webhook_outside_our_hooks_is_refused_and_never_called(sandbox, settings, slug, where):
    with site(answer(200, image_bytes(), content_type="image/png")) as elsewhere:
        if where == "our address outside /hooks/":
            settings.PUBLIC_BASE_URL = elsewhere.url
            hook = f"{elsewhere.url}/admin/"
        else:
            hook = f"{elsewhere.url}/hooks/{slug}/1/token/"
        response = submit_with_hook(sandbox, slug, hook, f"{elsewhere.url}/image.png")
        engine.wait_for_webhooks()  # had one been scheduled, it has been tried by now

        assert response.status_code in (400, 422), response.text
        assert "/hooks/" in response.text  # says where webhooks may go
        assert shaped_as(slug, response.status_code, response.content)
        assert elsewhere.posts() == []
        assert not SandboxTask.objects.exists()


def test_a_stored_webhook_outside_our_hooks_is_never_called(sandbox, settings):
    # Checked again at delivery: a task's webhook_url goes only to our own /hooks/.
    with site(answer(200)) as elsewhere:
        engine._post(f"{elsewhere.url}/hooks/fal/1/token/", {"a": 1}, {}, 0)
        assert elsewhere.connections == 0

        settings.PUBLIC_BASE_URL = elsewhere.url
        engine._post(f"{elsewhere.url}/hooks/fal/1/token/", {"a": 1}, {"X-Test": "1"}, 0)
        ((method, path, body),) = elsewhere.posts()
        assert (method, path, json.loads(body)) == ("POST", "/hooks/fal/1/token/", {"a": 1})


# --- bodies are capped before they are read ---------------------------------------------------
@pytest.mark.parametrize("slug", SLUGS)
def test_a_body_announced_over_the_cap_is_refused_unread(sandbox, slug):
    path, headers, content_type = SUBMITS[slug]
    size = 150 * MB
    status, body = raw_post(
        sandbox.url,
        f"/sandbox/{slug}/{path}",
        {**headers, "Content-Type": content_type, "Content-Length": str(size)},
        first_bytes=b"\0" * 65536,  # 64 KB of the announced 150 MB, then we wait
    )

    assert status == 413, body
    assert shaped_as(slug, 413, body)


@pytest.mark.parametrize("slug", SLUGS)
def test_a_chunked_body_the_server_cannot_measure_is_refused_unread(sandbox, slug):
    # Django's own server passes no chunked body on to the view: refused, not taken as
    # empty, and not read.
    path, headers, content_type = SUBMITS[slug]
    status, body = raw_post(
        sandbox.url,
        f"/sandbox/{slug}/{path}",
        {**headers, "Content-Type": content_type, "Transfer-Encoding": "chunked"},
        first_bytes=b"10000\r\n" + b"\0" * 65536 + b"\r\n",
    )

    assert status == 411, body
    assert shaped_as(slug, 411, body)


class EndlessBody(io.RawIOBase):
    """A chunked body a server such as gunicorn has de-chunked (it ends, eventually, but
    this one never does), counting the bytes read from it."""

    def __init__(self):
        self.consumed = 0

    def readable(self):
        return True

    def read(self, size=-1):
        size = 65536 if size is None or size < 0 else min(size, 1 << 20)
        self.consumed += size
        return b"\0" * size


@pytest.mark.parametrize("slug", SLUGS)
def test_a_chunked_body_over_the_cap_is_refused_after_reading_at_most_the_cap(db, slug):
    path, headers, content_type = SUBMITS[slug]
    url = f"/sandbox/{slug}/{path}"
    request = RequestFactory().post(url, data=b"{}", content_type=content_type, headers=headers)
    stream = EndlessBody()
    request.META.pop("CONTENT_LENGTH", None)  # no length announced
    request.META.update(
        {
            "wsgi.input": stream,
            "wsgi.input_terminated": True,  # the server says the stream ends with the body
            "HTTP_TRANSFER_ENCODING": "chunked",
        }
    )
    match = resolve(url)
    response = match.func(request, *match.args, **match.kwargs)

    assert response.status_code == 413, response.content
    assert shaped_as(slug, 413, response.content)
    assert 0 < stream.consumed <= 31 * MB  # the 30 MB cap (26 MB for Pixelcut) and a piece


# --- images are measured from their header first --------------------------------------------
def test_pixelcut_refuses_an_oversized_image_from_its_header(sandbox):
    # 3001x3001 in the header, and pixels that could never be decoded: the answer can
    # only come from the header.
    bomb = png_bomb(3001, 3001)
    pixelcut_sandbox.forget()
    response = httpx.post(
        f"{sandbox.url}/sandbox/pixelcut/v1/upscale",
        files={"image": ("big.png", bomb, "image/png")},
        data={"scale": "2"},
        headers={"X-API-KEY": SANDBOX_KEY},
        timeout=30,
    )

    assert response.status_code == 400
    assert response.json()["error_code"] == "resolution_too_high"


def test_fal_refuses_an_output_over_its_limit_from_the_header(sandbox):
    bomb = png_bomb(8000, 8000)  # 64 MP, times 2x2 is over fal's 100 MP
    body = {"image_url": "data:image/png;base64," + base64.b64encode(bomb).decode()}
    response = call(sandbox, "fal", {**body, "scale_factor": 2})

    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "image_too_large"


# --- our adapters still send every image the portal accepts ----------------------------------
BIG = 25 * MB - 4096  # just under MAX_UPLOAD_BYTES: ~34 MB once in base64


@pytest.mark.parametrize("slug, options", [("fal", {"scale": 1}), ("ximilar", {"scale": 2})])
def test_an_image_too_big_to_inline_goes_by_signed_link(
    sandbox, settings, submit, sent_requests, slug, options
):
    settings.WEBHOOKS_ENABLED = False
    job = submit(slug, image={"data": padded_png(BIG)}, **options)
    assert job.input_bytes > 24 * MB
    job = sandbox.settle(job)

    assert job.state == Job.State.SUCCEEDED, timeline(job)
    (post,) = [r for r in sent_requests if r.method == "POST"]
    body = json.loads(post.content)
    link = body["image_url"] if slug == "fal" else body["records"][0]["_url"]
    assert link.startswith(f"{settings.PUBLIC_BASE_URL}/inputs/")
    assert len(post.content) < MB


@pytest.mark.parametrize("slug", ["fal", "ximilar"])
def test_a_big_image_a_real_provider_could_not_fetch_is_refused_in_check(settings, slug):
    settings.PROVIDER_SETTINGS = {slug: {"api_key": "real-key", "base_url": ""}}
    provider = get_provider(slug)
    options = provider.clean_options({})
    small = ImageInfo("PNG", 96, 80, False, 5 * MB)
    big = ImageInfo("PNG", 96, 80, False, BIG)

    settings.PUBLIC_BASE_URL = "http://127.0.0.1:8000"
    provider.check(small, options)  # inline: no link needed
    with pytest.raises(Refusal) as refused:
        provider.check(big, options)
    assert "PUBLIC_BASE_URL" in refused.value.message

    settings.PUBLIC_BASE_URL = "https://portal.example"
    provider.check(big, options)  # the provider can fetch the link


# --- providers when sandboxes are off ------------------------------------------------------------
@pytest.fixture
def no_sandboxes(settings):
    # The URLconf reads SANDBOX_ENABLED once, when it is first imported: load it now, so
    # this override does not take /sandbox/ away from the tests that run after this one.
    get_resolver().url_patterns  # noqa: B018
    settings.SANDBOX_ENABLED = False
    settings.PROVIDER_SETTINGS = {
        slug: {"api_key": "", "base_url": ""} for slug in settings.PROVIDER_SETTINGS
    }
    return settings


@pytest.mark.parametrize("slug", SLUGS)
def test_a_provider_without_a_key_is_unavailable_when_sandboxes_are_off(no_sandboxes, slug):
    provider = get_provider(slug)
    assert not provider.available
    assert KEY_SETTINGS[slug] in provider.unavailable_reason
    assert get_provider("local").available

    no_sandboxes.PROVIDER_SETTINGS = {slug: {"api_key": "a-real-key", "base_url": ""}}
    assert get_provider(slug).available
    no_sandboxes.PROVIDER_SETTINGS = {slug: {"api_key": "", "base_url": ""}}
    no_sandboxes.SANDBOX_ENABLED = True
    assert get_provider(slug).available


@pytest.mark.parametrize("slug", SLUGS)
def test_intake_refuses_an_unavailable_provider_naming_the_setting(no_sandboxes, slug):
    with pytest.raises(intake.SubmissionRefused) as refused:
        intake.select([(slug, {}), ("local", {"scale": 2})])
    (message,) = refused.value.errors
    assert KEY_SETTINGS[slug] in message


def test_the_upload_page_shows_an_unavailable_provider_as_not_set_up(no_sandboxes, owner_client):
    page = owner_client.get("/").content.decode()

    for slug in SLUGS:
        (box,) = [
            line
            for line in page.splitlines()
            if 'name="provider"' in line and f'value="{slug}"' in line
        ]
        assert "disabled" in box, box
    local = [ln for ln in page.splitlines() if 'name="provider"' in ln and 'value="local"' in ln]
    assert "disabled" not in local[0]
    assert page.count("not set up") >= len(SLUGS)


def test_the_providers_page_says_which_are_not_set_up(no_sandboxes, owner_client):
    page = owner_client.get("/providers/").content.decode()

    for slug in SLUGS:
        row = page.split(f'id="provider-{slug}"', 1)[1].split("</tr>", 1)[0]
        assert "not set up" in row and KEY_SETTINGS[slug] in row, row
    local = page.split('id="provider-local"', 1)[1].split("</tr>", 1)[0]
    assert "not set up" not in local


def test_the_upscale_command_refuses_an_unavailable_provider(no_sandboxes, owner, tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(image_bytes())
    with pytest.raises(CommandError, match="FAL_KEY"):
        call_command("upscale", str(path), "--provider", "fal", "--user", "alice")
    assert not Job.objects.exists()


# --- sandbox mode, and its key ----------------------------------------------------------------
PROBE = """
import json, django
django.setup()
from django.apps import apps
from django.conf import settings
from django.test import Client
client = Client(raise_request_exception=False)
paths = [
    "/sandbox/files/x/",
    "/sandbox/pixazo/upscaler/v1/crystal-upscaler/generate",
    "/sandbox/fal/clarityai/crystal-upscaler",
    "/sandbox/apixo/generateTask/image-upscaler",
]
print(json.dumps({
    "installed": apps.is_installed("jobs.sandbox"),
    "files": client.get(paths[0]).status_code,
    "posts": [client.post(p, content_type="application/json", data="{}").status_code
              for p in paths[1:]],
    "key": settings.SANDBOX_API_KEY,
}))
"""


def production(tmp_path, secret_key, static_root, **extra) -> dict:
    """What a production process (nothing set but a SECRET_KEY) says about its sandboxes.
    `static_root`: the release step's collected files, which its error pages name."""
    drop = {"DEBUG", "SANDBOX_ENABLED", "DATABASE_URL", "REDIS_URL", "SECURE_SSL_REDIRECT"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        DJANGO_SETTINGS_MODULE="upscaler_site.settings",
        SECRET_KEY=secret_key,
        VAR_DIR=str(tmp_path),
        ALLOWED_HOSTS="testserver",
        SECURE_SSL_REDIRECT="false",  # the test client speaks plain http
        STATIC_ROOT=str(static_root),
        **extra,
    )
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_production_has_no_sandbox_and_each_install_its_own_key(tmp_path, collected_static):
    off = production(tmp_path, secrets.token_urlsafe(45)[:60], collected_static)
    on = production(
        tmp_path, secrets.token_urlsafe(45)[:60], collected_static, SANDBOX_ENABLED="true"
    )

    assert not off["installed"]
    assert off["files"] == 404 and off["posts"] == [404, 404, 404]
    assert on["installed"]
    assert on["files"] == 403  # the route is real: only a signed link opens it
    assert off["key"] != on["key"]  # derived from each SECRET_KEY
    assert len(off["key"]) >= 32


def test_no_sandbox_key_is_written_in_the_source():
    found = []
    for folder in ("jobs", "upscaler_site", "billing"):
        for path in (ROOT / folder).rglob("*"):
            wanted = path.is_file() and path.suffix in (".py", ".html", ".txt", ".json")
            if wanted and "sandbox-key" in path.read_text(errors="replace"):
                found.append(str(path.relative_to(ROOT)))
    assert found == []
