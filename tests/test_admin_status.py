"""The admin's status box: what /healthz checks (the same functions), and what an operator
asks next (work waiting, the oldest job in flight, the last sweep and purge)."""

import datetime
import re

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from django_q.models import Schedule, Task
from django_q.tasks import async_task

from jobs.models import Heartbeat, Job
from tests.rows import bare_job
from tests.test_health import HEALTHY_CLUSTER, beat
from tests.test_retention import Clock


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    """Ages are read on a frozen clock: a slow first request must not change them."""
    return Clock(monkeypatch)


@pytest.fixture
def staff_client(client, db):
    staff = get_user_model().objects.create_superuser("root", "root@example.com", "pw-12345")
    client.force_login(staff)
    return client


def box(client) -> str:
    response = client.get("/admin/")
    assert response.status_code == 200
    html = response.content.decode()
    start = html.index('id="status-box"')
    return html[start : html.index("</section>", start)]


def ago(**delta) -> datetime.datetime:
    return timezone.now() - datetime.timedelta(**delta)


def job(team, state, **fields) -> Job:
    return bare_job(team, state=state, **fields)


def test_staff_see_every_part_working(staff_client, team):
    beat("tracker", seconds_ago=2)
    beat("cluster:web-1:42", **HEALTHY_CLUSTER)
    html = box(staff_client)
    assert "all parts working" in html
    assert re.search(r"Cluster web-1:42</th>\s*<td><span class=\"st st-ok\">alive", html)
    assert "heartbeat 2.0 s ago" in html  # the tracker's
    assert "style=" not in html and "<script" not in html  # the CSP refuses both


def test_a_frozen_cluster_and_the_waiting_work_are_shown(staff_client, team):
    beat("tracker", seconds_ago=1)
    beat("cluster:web-1:42", **HEALTHY_CLUSTER)
    beat("cluster:web-2:7", **{**HEALTHY_CLUSTER, "frozen": True, "waiting": 3})
    job(team, Job.State.QUEUED)
    job(team, Job.State.QUEUED)
    running = job(team, Job.State.RUNNING, submitted_at=ago(hours=2, minutes=5))
    job(team, Job.State.RUNNING, submitted_at=ago(minutes=3))
    async_task("jobs.tasks.sweep")  # the ORM broker holds it: no cluster runs here

    html = box(staff_client)

    assert "needs attention (cluster)" in html
    assert re.search(r"Cluster web-2:7</th>\s*<td><span class=\"st st-bad\">frozen", html)
    assert "3 waiting" in html
    assert "1 task queued" in html
    assert "2 jobs queued" in html
    assert f'href="/admin/jobs/job/{running.pk}/change/"' in html
    assert "running (local) for 2 h 05 min" in html  # the oldest running job


def test_the_last_sweep_and_the_last_purge_are_shown(staff_client, settings):
    settings.RETENTION_DAYS = 30
    sweep = Schedule.objects.get(name="jobs.sweep")
    Task.objects.create(
        id="a" * 32,
        name="sweep-task",
        func="jobs.tasks.sweep",
        started=ago(seconds=42),
        stopped=ago(seconds=41),
        success=True,
    )
    sweep.task = "a" * 32
    sweep.save()
    Heartbeat.objects.create(
        name="purge", beat_at=ago(hours=5), detail={"jobs": 3, "files": 11, "bytes": 5 * 1024**2}
    )
    html = box(staff_client)
    assert "Last sweep" in html and "41 s ago" in html and "succeeded" in html
    assert "Last purge" in html and "5 h 00 min ago" in html
    assert "11 files of 3 jobs" in html and "5.0 MB" in html
    assert "files kept 30 days" in html


def test_without_any_process_running_it_says_what_is_missing(staff_client):
    html = box(staff_client)
    assert "needs attention" in html
    assert "no tracker has ever run" in html
    assert "manage.py cluster" in html
    assert "never" in html  # no purge yet
