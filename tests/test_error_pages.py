"""With DEBUG off every error answers a page in the portal's look, in plain words, with a
way home: never a traceback, the URL map or the settings."""

import pytest
from django.test import Client

from tests.error_urls import SECRET_DETAIL

# What Django's technical pages show (and what must never reach a visitor).
TECHNICAL = ("Traceback", "Using the URLconf", "urlpatterns", "SECRET_KEY", "DEBUG = True")


@pytest.fixture(autouse=True)
def production(settings):
    settings.DEBUG = False
    settings.ROOT_URLCONF = "tests.error_urls"


def assert_branded(response, status: int, words: str):
    html = response.content.decode()
    assert response.status_code == status
    assert "/static/jobs/portal.css" in html  # the portal's look
    assert 'class="brand"' in html and "Upscaler" in html
    assert 'href="/"' in html  # a way home
    assert words in html
    for leak in (*TECHNICAL, SECRET_DETAIL):
        assert leak not in html, leak
    return html


def test_an_unknown_address_answers_the_branded_404(client, owner):
    assert_branded(client.get("/no-such-page/"), 404, "Page not found")
    client.force_login(owner)
    assert_branded(client.get("/no-such-page/"), 404, "Page not found")


def test_a_member_opening_a_foreign_job_gets_the_branded_404(
    client, make_job, owner, team, outsider
):
    job = make_job(owner, team)
    client.force_login(outsider)
    html = assert_branded(client.get(f"/jobs/{job.pk}/"), 404, "Page not found")
    assert job.input_name not in html


def test_a_crash_answers_the_branded_500_without_a_traceback(client):
    client.raise_request_exception = False
    assert_branded(client.get("/test-errors/500/"), 500, "Something went wrong")


def test_a_refusal_answers_the_branded_403(client):
    assert_branded(client.get("/test-errors/403/"), 403, "not allowed")


def test_a_bad_request_answers_the_branded_400(client):
    assert_branded(client.get("/test-errors/400/"), 400, "could not understand")
    # An unknown Host header is a bad request too (ALLOWED_HOSTS).
    assert_branded(client.get("/", HTTP_HOST="evil.example"), 400, "could not understand")


def test_a_form_without_its_csrf_token_answers_the_branded_403(db):
    strict = Client(enforce_csrf_checks=True)
    response = strict.post("/accounts/login/", {"username": "a", "password": "b"})
    html = assert_branded(response, 403, "reload the page")
    assert "CSRF verification failed" not in html


def test_error_pages_carry_the_strict_policy(client):
    client.raise_request_exception = False
    for url in ("/no-such-page/", "/test-errors/500/", "/test-errors/403/", "/test-errors/400/"):
        header = client.get(url).headers["Content-Security-Policy"]
        assert "script-src 'self'" in header and "unsafe" not in header
