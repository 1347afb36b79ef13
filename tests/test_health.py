"""/healthz tells a load balancer and an uptime check whether the portal does its work,
without a login, a redirect or a secret."""

import json

import pytest
from django.utils import timezone

from jobs.models import Heartbeat


def beat(name, seconds_ago=0, **detail):
    Heartbeat.objects.update_or_create(
        name=name,
        defaults={
            "beat_at": timezone.now() - timezone.timedelta(seconds=seconds_ago),
            "detail": detail,
        },
    )


HEALTHY_CLUSTER = dict(waiting=0, busy_workers=0, restarts=0, last_start_age=3.0, frozen=False)


@pytest.fixture
def everything_running(db):
    beat("tracker")
    beat("cluster:web-1:42", **HEALTHY_CLUSTER)


def get(client, path, **extra):
    response = client.get(path, **extra)
    return response.status_code, json.loads(response.content)


def test_it_answers_all_clear_when_every_part_works(client, everything_running):
    status, body = get(client, "/healthz")
    assert status == 200 and body["ok"] is True
    assert set(body["checks"]) == {"database", "broker", "storage", "tracker", "cluster"}
    assert body["checks"]["cluster"]["clusters"][0]["name"] == "web-1:42"


def test_a_frozen_cluster_makes_it_fail(client, everything_running):
    beat("cluster:web-1:42", **{**HEALTHY_CLUSTER, "frozen": True, "waiting": 3})
    status, body = get(client, "/healthz")
    assert status == 503 and body["checks"]["cluster"]["ok"] is False
    assert body["checks"]["tracker"]["ok"] is True


def test_a_silent_supervisor_or_tracker_makes_it_fail(client, everything_running):
    beat("cluster:web-1:42", seconds_ago=120, **HEALTHY_CLUSTER)
    beat("tracker", seconds_ago=60)
    status, body = get(client, "/healthz")
    assert status == 503
    tracker = body["checks"]["tracker"]
    assert tracker["ok"] is False and tracker["heartbeat_age_s"] >= 60
    assert body["checks"]["cluster"]["ok"] is False


def test_without_any_supervised_cluster_it_says_so(client, db):
    beat("tracker")
    status, body = get(client, "/healthz")
    assert status == 503
    assert "manage.py cluster" in body["checks"]["cluster"]["error"]


def test_the_live_check_is_the_database_only(client, db):
    status, body = get(client, "/healthz/live")
    assert status == 200 and set(body["checks"]) == {"database"}


def test_probes_by_address_over_plain_http_get_the_answer(client, settings, everything_running):
    # Production redirects http to https and refuses unknown hosts; a load balancer
    # probing a node at its IP must still be answered.
    settings.SECURE_SSL_REDIRECT = True
    settings.ALLOWED_HOSTS = ["upscaler.example.com"]
    status, body = get(client, "/healthz/live", HTTP_HOST="10.1.2.3:8000")
    assert status == 200 and body["ok"] is True
    assert client.get("/accounts/login/", HTTP_HOST="10.1.2.3:8000").status_code == 400


def test_it_tells_no_secret(client, settings, everything_running):
    text = client.get("/healthz").content.decode()
    assert settings.SECRET_KEY not in text and settings.SANDBOX_API_KEY not in text
    assert "password" not in text.lower()
