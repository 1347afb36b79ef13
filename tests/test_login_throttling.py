"""Sign-in throttling (django-axes): after LOGIN_FAILURE_LIMIT failures for one user name
or from one address, sign-in is refused for LOGIN_COOLOFF_MINUTES with a clear page, on
the portal's sign-in page and the admin's alike. Real POSTs through the test client."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

PASSWORD = "pw-12345"  # what tests/conftest.py gives its users
PORTAL, ADMIN = "/accounts/login/", "/admin/login/"


def sign_in(client, username, password, path=PORTAL, address="127.0.0.1"):
    return client.post(
        path, {"username": username, "password": password, "next": "/"}, REMOTE_ADDR=address
    )


def fail(client, username, times, path=PORTAL, address="127.0.0.1"):
    for _ in range(times):
        sign_in(client, username, "not-the-password", path, address)


def signed_in(response) -> bool:
    return response.status_code == 302 and "_auth_user_id" in response.client.session


def assert_locked_out(response):
    html = response.content.decode()
    assert response.status_code == 429
    assert "Too many failed sign-ins" in html
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    assert f"Try again in {minutes} minutes" in html
    assert "/static/jobs/portal.css" in html  # in the portal's look
    assert "_auth_user_id" not in response.client.session


@pytest.fixture
def clock(monkeypatch):
    """The time axes stamps on each attempt, moved forward by the test instead of waited for."""

    class Clock:
        now = timezone.now()

        def advance(self, **delta):
            self.now += timedelta(**delta)

    clock = Clock()
    monkeypatch.setattr("axes.handlers.proxy.now", lambda: clock.now)
    return clock


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)


def test_the_limit_is_five_failures_for_fifteen_minutes_by_default():
    assert settings.AXES_FAILURE_LIMIT == 5
    assert settings.AXES_COOLOFF_TIME.total_seconds() == 15 * 60


def test_five_wrong_passwords_lock_the_account_even_against_the_right_one(client, owner):
    fail(client, owner.username, 3)
    assert sign_in(client, owner.username, "still-wrong").status_code == 200  # the 4th
    assert_locked_out(sign_in(client, owner.username, "still-wrong"))  # the 5th locks
    assert_locked_out(sign_in(client, owner.username, PASSWORD))
    # From another address too: the lock is on the user name, not only on the address.
    assert_locked_out(sign_in(Client(), owner.username, PASSWORD, address="10.1.2.3"))


def test_five_failures_from_one_address_lock_that_address_for_every_user_name(
    client, owner, teammate
):
    for name in ("ann", "ben", "cat", "dan", "eve"):
        sign_in(client, name, "guess", address="10.0.0.7")
    assert_locked_out(sign_in(client, teammate.username, PASSWORD, address="10.0.0.7"))
    # Another address is not affected.
    assert signed_in(sign_in(Client(), teammate.username, PASSWORD, address="10.0.0.8"))


def test_the_admin_sign_in_is_throttled_the_same_way(client, staff):
    fail(client, staff.username, 5, path=ADMIN)
    assert_locked_out(sign_in(client, staff.username, PASSWORD, path=ADMIN))
    # One count for both doors: failures on the portal's page lock the admin's, and back.
    assert_locked_out(sign_in(Client(), staff.username, PASSWORD, path=PORTAL))


def test_failures_on_both_sign_in_pages_add_up(client, staff):
    fail(client, staff.username, 3, path=PORTAL)
    fail(client, staff.username, 2, path=ADMIN)
    assert_locked_out(sign_in(client, staff.username, PASSWORD, path=ADMIN))


def test_a_success_before_the_limit_resets_the_count(owner):
    fail(Client(), owner.username, 4)
    assert signed_in(sign_in(Client(), owner.username, PASSWORD))
    fail(Client(), owner.username, 4)
    assert signed_in(sign_in(Client(), owner.username, PASSWORD))


def test_the_lock_ends_when_the_cool_off_has_passed(client, owner, clock):
    fail(client, owner.username, 5)
    clock.advance(minutes=14)
    # Still locked; and this refused attempt counts, so the cool-off starts again from now.
    assert_locked_out(sign_in(client, owner.username, PASSWORD))
    clock.advance(minutes=14)
    assert_locked_out(sign_in(client, owner.username, PASSWORD))
    clock.advance(minutes=15, seconds=1)
    assert signed_in(sign_in(client, owner.username, PASSWORD))


def test_a_wrong_password_below_the_limit_keeps_the_usual_message(client, owner):
    response = sign_in(client, owner.username, "not-the-password")
    assert response.status_code == 200
    assert "That user name and password do not match" in response.content.decode()
