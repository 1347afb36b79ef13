"""Personal API tokens (issue #12): the Account page makes them (shown once, stored as a
digest), lists and revokes them; staff revoke any in the admin; the API takes them as
Bearer tokens, notes their last use, limits their rate, and answers problem+json."""

import datetime
import json
import logging
import re
import threading

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from jobs.api import auth, tokens
from jobs.api.reference import reference
from jobs.models import ApiToken

ACCOUNT = "/account/"
ME = "/api/v1/tokens/me"


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def make(client, name="nightly script"):
    answer = client.post(reverse("jobs:token_create"), {"name": name})
    assert answer.status_code == 201
    row = ApiToken.objects.get(name=name)
    return row, answer.context["made"]["token"], answer


def problem(answer, status):
    assert answer.status_code == status
    assert answer["Content-Type"] == "application/problem+json"
    body = answer.json()
    assert body["status"] == status and body["type"] == "about:blank"
    assert body["title"] and body["detail"]
    return body


# --- the Account page -----------------------------------------------------------------------
def test_the_top_bar_links_the_account_page(owner_client):
    page = owner_client.get(reverse("jobs:upload")).content.decode()
    assert f'href="{ACCOUNT}"' in page


def test_it_shows_a_new_token_once_with_a_curl_example_and_its_webhook_secret(owner_client):
    row, token, answer = make(owner_client)
    page = answer.content.decode()
    assert token.startswith(row.prefix + "_")
    assert f'value="{token}"' in page
    assert f'curl -H "Authorization: Bearer {token}" http://testserver/api/v1/tokens/me' in page
    secret = tokens.webhook_secret(row)
    assert secret.startswith("whsec_") and secret in page
    assert answer["Cache-Control"].startswith("max-age=0") or "no-store" in answer["Cache-Control"]

    later = owner_client.get(ACCOUNT).content.decode()
    assert "nightly script" in later and row.prefix in later
    assert token not in later and secret not in later
    assert token[len(row.prefix) :] not in later


def test_it_stores_only_a_digest(owner_client):
    row, token, _ = make(owner_client)
    assert row.digest == tokens.digest(token) != token
    secret = token.split("_", 2)[2]
    values = ApiToken.objects.filter(pk=row.pk).values().get()
    for value in values.values():
        assert secret not in str(value)
        assert tokens.webhook_secret(row) not in str(value)


def test_it_lists_only_the_persons_own_tokens(owner_client, teammate):
    make(owner_client, "mine")
    tokens.create(teammate, "bob's")
    page = owner_client.get(ACCOUNT).content.decode()
    assert "mine" in page and "bob&#x27;s" not in page


def test_it_refuses_a_token_without_a_name(owner_client):
    answer = owner_client.post(reverse("jobs:token_create"), {"name": "   "})
    assert answer.status_code == 422
    assert "Give the token a name" in answer.content.decode()
    assert not ApiToken.objects.exists()


def test_it_refuses_a_name_too_long(owner_client):
    answer = owner_client.post(reverse("jobs:token_create"), {"name": "x" * 61})
    assert answer.status_code == 422 and not ApiToken.objects.exists()


def test_the_account_page_needs_a_sign_in(client):
    assert client.get(ACCOUNT).status_code == 302
    assert client.post(reverse("jobs:token_create"), {"name": "x"}).status_code == 302


def test_revoking_makes_the_token_fail(owner_client, owner):
    row, token, _ = make(owner_client)
    assert owner_client.get(ME, headers=bearer(token)).status_code == 200
    answer = owner_client.post(reverse("jobs:token_revoke", args=[row.pk]), follow=True)
    assert "no longer works" in answer.content.decode()
    row.refresh_from_db()
    assert row.revoked_at and row.revoked_by == owner
    problem(owner_client.get(ME, headers=bearer(token)), 401)
    assert "revoked" in owner_client.get(ACCOUNT).content.decode()


def test_it_answers_404_for_another_persons_token(owner_client, teammate):
    theirs, token = tokens.create(teammate, "bob's")
    answer = owner_client.post(reverse("jobs:token_revoke", args=[theirs.pk]))
    assert answer.status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None
    assert owner_client.get(ME, headers=bearer(token)).status_code == 200


def test_revoke_wants_a_post(owner_client):
    row, _, _ = make(owner_client)
    assert owner_client.get(reverse("jobs:token_revoke", args=[row.pk])).status_code == 405


# --- staff, in the admin ---------------------------------------------------------------------
@pytest.fixture
def staff_client(client, django_user_model):
    staff = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(staff)
    return client


def test_staff_revoke_any_token_in_the_admin_and_never_see_its_digest(staff_client, teammate):
    row, token = tokens.create(teammate, "bob's")
    listing = staff_client.get("/admin/jobs/apitoken/").content.decode()
    assert row.prefix in listing and row.digest not in listing
    detail = staff_client.get(f"/admin/jobs/apitoken/{row.pk}/change/").content.decode()
    assert row.prefix in detail and row.digest not in detail
    staff_client.post("/admin/jobs/apitoken/", {"action": "revoke", "_selected_action": [row.pk]})
    row.refresh_from_db()
    assert row.revoked_at is not None and row.revoked_by.username == "root"
    problem(staff_client.get(ME, headers=bearer(token)), 401)


# --- the API side ------------------------------------------------------------------------------
def test_tokens_me_says_who_and_which_teams(client, owner, team):
    row, token = tokens.create(owner, "ci")
    body = client.get(ME, headers=bearer(token)).json()
    assert body["name"] == "ci" and body["prefix"] == row.prefix and body["user"] == "alice"
    assert body["teams"] == [{"id": team.pk, "name": "Studio", "role": "manager"}]
    assert token not in json.dumps(body)


def test_it_notes_when_a_token_was_last_used(client, owner):
    row, token = tokens.create(owner, "ci")
    assert row.last_used_at is None
    client.get(ME, headers=bearer(token))
    row.refresh_from_db()
    assert row.last_used_at is not None
    # Older than a minute: noted again (not a write on every call).
    ApiToken.objects.filter(pk=row.pk).update(
        last_used_at=timezone.now() - datetime.timedelta(minutes=5)
    )
    client.get(ME, headers=bearer(token))
    row.refresh_from_db()
    assert timezone.now() - row.last_used_at < datetime.timedelta(seconds=30)


def test_a_token_of_an_inactive_user_fails(client, owner):
    _, token = tokens.create(owner, "ci")
    owner.is_active = False
    owner.save()
    problem(client.get(ME, headers=bearer(token)), 401)


def test_the_token_never_reaches_the_logs(client, owner, caplog):
    _, token = tokens.create(owner, "ci")
    with caplog.at_level(logging.DEBUG):
        client.get(ME, headers=bearer(token))
        client.get("/api/v1/jobs/999999", headers=bearer(token))
        client.get(ME, headers=bearer(token + "x"))
    secret = token.split("_", 2)[2]
    assert caplog.records  # the 404 and the 401 were logged
    assert not [r for r in caplog.records if secret in r.getMessage()]
    assert secret not in caplog.text


# --- problem+json ---------------------------------------------------------------------------
def test_a_missing_or_wrong_token_is_a_401_problem(client, db):
    body = problem(client.get(ME), 401)
    assert "Authorization: Bearer" in body["detail"]
    answer = client.get(ME, headers=bearer("upk_nope_nope"))
    problem(answer, 401)
    assert answer["WWW-Authenticate"].startswith("Bearer")


def test_another_teams_job_is_a_404_problem(client, outsider, owner, team, make_job):
    job = make_job(owner, team, run=False)
    _, token = tokens.create(outsider, "ci")
    problem(client.get(f"/api/v1/jobs/{job.pk}", headers=bearer(token)), 404)


def test_an_unknown_api_address_is_a_404_problem(client, owner):
    _, token = tokens.create(owner, "ci")
    for path in ("/api/v1/nonesuch", "/api/v2/"):
        body = problem(client.get(path, headers=bearer(token)), 404)
        assert "/api/v1/reference/" in body["detail"]
        # A POST too (an API client has no CSRF token): the same 404, not a CSRF page.
        strict = Client(enforce_csrf_checks=True)
        problem(strict.post(path, headers=bearer(token)), 404)
    problem(client.get("/api/v1/jobs/-1", headers=bearer(token)), 404)  # no such job


def test_a_bad_value_is_a_422_problem_naming_it(client, owner):
    _, token = tokens.create(owner, "ci")
    answer = client.post(
        "/api/v1/quote", data="{}", content_type="application/json", headers=bearer(token)
    )
    body = problem(answer, 422)
    assert body["errors"]


# --- the rate limit ---------------------------------------------------------------------------
@pytest.fixture(params=["cache", "database"])
def counter(request, settings):
    """Both places a count may live: Redis (the cache; memory without REDIS_URL) and the
    token's row (production without Redis)."""
    settings.API_RATE_COUNTER = request.param  # each test's tokens are new: no count yet
    return request.param


def test_too_many_requests_are_a_429_problem_with_retry_after(client, owner, settings, counter):
    settings.API_RATE_PER_MINUTE = 3
    _, token = tokens.create(owner, "ci")
    statuses = [client.get(ME, headers=bearer(token)).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    answer = client.get(ME, headers=bearer(token))
    body = problem(answer, 429)
    assert 1 <= int(answer["Retry-After"]) <= 60
    assert "3 a minute" in body["detail"]
    # Another token of the same person has a count of its own.
    _, other = tokens.create(owner, "other")
    assert client.get(ME, headers=bearer(other)).status_code == 200


def test_the_limit_is_per_clock_minute(owner, settings, counter):
    settings.API_RATE_PER_MINUTE = 2
    row, _ = tokens.create(owner, "ci")
    start = 1_800_000_000.0  # a minute's start (divisible by 60)
    auth.check_rate(row, now=start + 10)
    auth.check_rate(row, now=start + 20)
    with pytest.raises(auth.Problem) as refused:
        auth.check_rate(row, now=start + 45.5)
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "15"
    auth.check_rate(row, now=start + 60)  # the next minute starts a new count


def test_a_limit_of_zero_means_no_limit(owner, settings, counter):
    settings.API_RATE_PER_MINUTE = 0
    row, _ = tokens.create(owner, "ci")
    for _ in range(5):
        auth.check_rate(row, now=1_800_000_000.0)


@pytest.mark.django_db(transaction=True)
def test_the_database_count_is_exact_across_connections(owner, settings):
    # Processes without Redis share one count: threads with connections of their own
    # counting at once never see the same number, and none is lost.
    settings.API_RATE_COUNTER, settings.API_RATE_PER_MINUTE = "database", 1000
    row, _ = tokens.create(owner, "busy")
    window = 30_000_000
    seen, errors = [], []

    def count(n):
        try:
            for _ in range(n):
                seen.append(auth._count_in_database(row, window))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=count, args=(10,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(seen) == list(range(1, 41))
    assert auth._count_in_database(row, window + 1) == 1  # the next minute starts again


# --- the reference page -------------------------------------------------------------------------
def test_the_reference_lists_every_operation_for_anyone(client, db, django_assert_num_queries):
    answer = client.get(reverse("api-reference"))
    assert answer.status_code == 200
    page = answer.content.decode()
    for method, path in [
        ("GET", "/api/v1/tokens/me"),
        ("GET", "/api/v1/providers"),
        ("POST", "/api/v1/jobs"),
        ("GET", "/api/v1/jobs/{job_id}"),
    ]:
        assert re.search(rf">{method}</span> (<code[^>]*>)?{re.escape(path)}<", page), path
    assert "Idempotency-Key" in page and "problem+json" in page
    assert "<script>" not in page and " style=" not in page
    with django_assert_num_queries(0):
        client.get(reverse("api-reference"))  # anonymous: one render, no query, no schema build
    assert reference.cache_info().hits >= 1


def test_the_account_page_links_the_reference(owner_client):
    assert reverse("api-reference") in owner_client.get(ACCOUNT).content.decode()
