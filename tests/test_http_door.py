"""The one door for outbound HTTP: result downloads are capped, https only, and never
reach private addresses except the configured provider host."""

import asyncio

import httpx
import pytest

from jobs import http
from jobs.errors import ProviderError

PUBLIC = "https://93.184.216.34"  # an IP literal: no DNS needed, and it is global


def download(url, handler=None, allowed=(), **kwargs):
    async def go():
        transport = httpx.MockTransport(handler) if handler else None
        async with httpx.AsyncClient(transport=transport) as client:
            return await http.download(
                client, url, allowed_hosts=set(allowed), who="Acme", **kwargs
            )

    return asyncio.run(go())


def image(request):
    return httpx.Response(200, content=b"PNGDATA", headers={"Content-Length": "7"})


def test_it_downloads_from_a_public_https_address():
    assert download(f"{PUBLIC}/result.png", image) == b"PNGDATA"


@pytest.mark.parametrize("url", ["http://93.184.216.34/r.png", "ftp://93.184.216.34/r.png"])
def test_it_refuses_anything_but_https(url):
    with pytest.raises(ProviderError) as err:
        download(url, image)
    assert err.value.code == "bad_result_url" and not err.value.retryable


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "10.1.2.3", "192.168.0.10", "169.254.169.254", "[::1]"]
)
def test_it_refuses_private_and_loopback_addresses(host):
    with pytest.raises(ProviderError) as err:
        download(f"https://{host}/r.png", image)
    assert err.value.code == "bad_result_url"
    assert "private network address" in err.value.message


def test_the_configured_provider_host_may_be_local_and_plain_http(live_server):
    # The sandboxes live on 127.0.0.1: their host is the one exception.
    url = f"{live_server.url}/accounts/login/"
    host = httpx.URL(live_server.url).host
    assert b"Sign in" in download(url, allowed=[host])
    with pytest.raises(ProviderError, match="not https"):
        download(url)


def test_every_redirect_is_checked_again():
    def handler(request):
        if request.url.host == "93.184.216.34":
            return httpx.Response(302, headers={"Location": "https://10.0.0.8/steal"})
        return image(request)

    with pytest.raises(ProviderError) as err:
        download(f"{PUBLIC}/r.png", handler)
    assert err.value.code == "bad_result_url"


def test_a_redirect_to_another_public_address_is_followed():
    def handler(request):
        if request.url.path == "/r.png":
            return httpx.Response(302, headers={"Location": "/final.png"})
        return image(request)

    assert download(f"{PUBLIC}/r.png", handler) == b"PNGDATA"


def test_endless_redirects_stop():
    def handler(request):
        return httpx.Response(302, headers={"Location": "/again"})

    with pytest.raises(ProviderError, match="redirected too many times"):
        download(f"{PUBLIC}/r.png", handler)


def test_it_caps_the_size_declared_or_not():
    big = b"x" * 4096

    def declared(request):
        return httpx.Response(200, content=big)

    def streamed(request):
        return httpx.Response(200, stream=httpx.ByteStream(big))

    for handler in (declared, streamed):
        with pytest.raises(ProviderError) as err:
            download(f"{PUBLIC}/r.png", handler, max_bytes=1024)
        assert err.value.code == "result_too_large"


def test_it_gives_up_at_the_deadline():
    async def slow(request):
        await asyncio.sleep(5)  # a provider that never finishes sending
        return image(request)

    with pytest.raises(ProviderError) as err:
        download(f"{PUBLIC}/r.png", slow, deadline=0.2)
    assert err.value.code == "result_timeout" and err.value.retryable


@pytest.mark.parametrize(
    "status,code,retryable",
    [
        (403, "result_expired", False),
        (404, "result_expired", False),
        (410, "result_expired", False),
        (503, "result_download_failed", True),
        (500, "result_download_failed", True),
    ],
)
def test_error_answers_are_classified_once(status, code, retryable):
    with pytest.raises(ProviderError) as err:
        download(f"{PUBLIC}/r.png", lambda request: httpx.Response(status))
    assert (err.value.code, err.value.retryable) == (code, retryable)


def test_retry_after_is_honoured_by_the_backoff():
    response = httpx.Response(429, headers={"Retry-After": "7"})
    assert http.retry_after(response) == 7
    assert http.backoff(1, http.retry_after(response)) >= 7
    assert http.retry_after(httpx.Response(429, headers={"Retry-After": "soon"})) is None
    delays = [http.backoff(n) for n in range(1, 12)]
    assert all(0.5 <= d <= 60 for d in delays) and max(delays) > 8


def test_a_submit_that_timed_out_may_have_been_received():
    async def go():
        def handler(request):
            raise httpx.ReadTimeout("late", request=request)

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await http.send(client, httpx.Request("POST", f"{PUBLIC}/x"), "Acme")

    with pytest.raises(ProviderError) as err:
        asyncio.run(go())
    assert err.value.retryable and err.value.maybe_received


@pytest.mark.parametrize(
    "public,key,expected",
    [
        ("http://127.0.0.1:8000", "", True),  # sandbox: always reachable
        ("http://127.0.0.1:8000", "real-key", False),  # a real provider cannot call us here
        ("http://192.168.1.5", "real-key", False),
        ("https://portal.example.com", "real-key", True),
        ("https://93.184.216.34", "real-key", True),
    ],
)
def test_webhooks_are_asked_for_only_where_they_can_arrive(settings, public, key, expected):
    from jobs.providers import get_provider

    settings.PUBLIC_BASE_URL = public
    settings.PROVIDER_SETTINGS = {"ximilar": {"api_key": key, "base_url": ""}}
    provider = get_provider("ximilar")
    assert provider.webhooks_enabled is expected
    # Polling is the fallback where a webhook is on its way, and the only way otherwise.
    assert provider.poll_delay(10) == (8.0 if expected else 3.0)
