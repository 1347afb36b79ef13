"""`manage.py demo_user` (run by bin/run at every start) makes the demo login once and
then leaves it alone: a restart must not reset its password or sign its user out."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from billing.models import Membership


def run(monkeypatch) -> str:
    monkeypatch.setenv("DEMO_USERNAME", "demo")
    monkeypatch.setenv("DEMO_PASSWORD", "demo-password-1")
    out = StringIO()
    call_command("demo_user", stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_the_first_start_creates_the_demo_user_with_a_team(monkeypatch):
    out = run(monkeypatch)
    user = get_user_model().objects.get(username="demo")
    assert user.check_password("demo-password-1")
    assert user.is_staff and user.is_superuser
    assert Membership.objects.filter(user=user).count() == 1
    assert "Created demo login" in out


@pytest.mark.django_db
def test_a_later_start_leaves_an_existing_user_as_it_is(monkeypatch, client):
    run(monkeypatch)
    user = get_user_model().objects.get(username="demo")
    user.set_password("changed-by-the-user")
    user.is_staff = user.is_superuser = False
    user.save()
    client.force_login(user)  # a session made before the restart
    assert client.get("/jobs/").status_code == 200

    out = run(monkeypatch)

    user.refresh_from_db()
    assert user.check_password("changed-by-the-user")
    assert not user.is_staff and not user.is_superuser
    assert "already exists" in out and "demo-password-1" not in out
    # The session survives: the password hash it was made with has not changed.
    assert client.get("/jobs/").status_code == 200
    assert Membership.objects.filter(user=user).count() == 1
