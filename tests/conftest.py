import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from django_q.conf import Conf

from billing.models import Membership, Team


@pytest.fixture(autouse=True)
def isolated_media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    # Fast hashing: tests create many users; real hashing is not what they test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def sync_tasks(monkeypatch):
    """Tasks run in-process the moment they are queued (use with real commits)."""
    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture
def inline_tasks(monkeypatch, django_capture_on_commit_callbacks):
    """Run queued tasks in-process, as the cluster would, when the transaction commits.

    Use as a context manager: `with inline_tasks(): client.post(...)`."""
    monkeypatch.setattr(Conf, "SYNC", True)

    def run():
        return django_capture_on_commit_callbacks(execute=True)

    return run


def _member(username, team, role=Membership.Role.MEMBER):
    user = get_user_model().objects.create_user(username, f"{username}@example.com", "pw-12345")
    Membership.objects.create(team=team, user=user, role=role)
    return user


@pytest.fixture
def team(db):
    return Team.objects.create(name="Studio")


@pytest.fixture
def other_team(db):
    return Team.objects.create(name="Agency")


@pytest.fixture
def owner(team):
    return _member("alice", team, Membership.Role.MANAGER)


@pytest.fixture
def teammate(team):
    return _member("bob", team)


@pytest.fixture
def outsider(other_team):
    return _member("carol", other_team, Membership.Role.MANAGER)


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def make_job(inline_tasks):
    """make_job(user, team, name=..., scale=..., run=True): a job made the way the
    upload page makes it; with run=False it stays queued. Never a reused result (tests
    make many jobs of the same generated image): tests/test_reuse.py tests reuse."""
    from jobs import intake
    from tests.images import upload

    def make(user, team, name="photo.png", scale=2, run=True, **image):
        files = [upload(name, **image)]
        if run:
            with inline_tasks():
                (job,) = intake.submit_uploads(
                    user=user,
                    team=team,
                    files=files,
                    choices=[("local", {"scale": scale})],
                    reuse=False,
                )
        else:
            (job,) = intake.submit_uploads(
                user=user,
                team=team,
                files=files,
                choices=[("local", {"scale": scale})],
                reuse=False,
            )
        job.refresh_from_db()
        return job

    return make


class Sandbox:
    """The portal's sandboxes served by a live server, reached over real HTTP."""

    def __init__(self, url):
        self.url = url

    def faults(self, provider, **values):
        from jobs.sandbox import engine

        return engine.set_faults(provider, **values)

    def settle(self, job, timeout=20.0, until=None):
        """Drive the tracker until the job has ended (or `until(job)` holds). Waits on
        the job's state with a deadline; asserts nothing about how long it took."""
        import time

        from jobs.models import Job
        from jobs.tracker import Tracker

        tracker = Tracker()
        deadline = time.monotonic() + timeout
        try:
            while True:
                job.refresh_from_db()
                if until(job) if until else job.state in Job.FINAL_STATES:
                    return job
                if time.monotonic() > deadline:
                    events = list(job.events.values_list("state", "detail"))
                    raise AssertionError(f"job {job.pk} still {job.state}: {events}")
                # Backoffs are real delays: make whatever is scheduled due now.
                Job.objects.filter(pk=job.pk, next_poll_at__isnull=False).update(
                    next_poll_at=timezone.now()
                )
                tracker.tick()
                time.sleep(0.05)  # let webhook threads and the live server run
        finally:
            tracker.close()


@pytest.fixture
def sandbox(live_server, settings, sync_tasks, transactional_db):
    """Adapters talk to their sandboxes at the live server; tasks run in-process.

    Sandbox tasks finish at once unless a test sets `latency` with sandbox.faults()."""
    settings.PUBLIC_BASE_URL = live_server.url
    settings.SANDBOX_LATENCY = 0.0
    # Whatever the environment says, tests use the sandboxes.
    settings.PROVIDER_SETTINGS = {
        slug: {"api_key": "", "base_url": ""} for slug in settings.PROVIDER_SETTINGS
    }
    from jobs.sandbox import engine

    engine.forget_faults()  # the previous test's faults went with its database
    yield Sandbox(live_server.url)
    engine.wait_for_webhooks()  # none may land while the test database is torn down
    engine.forget_faults()


@pytest.fixture
def submit(owner, team):
    """submit(provider, name=..., **options) -> Job: through intake, like the page."""
    from jobs import intake
    from tests.images import upload

    def go(provider, name="photo.png", image=None, **options):
        files = [upload(name, **(image or {}))]
        (job,) = intake.submit_uploads(
            user=owner, team=team, files=files, choices=[(provider, options)], reuse=False
        )
        job.refresh_from_db()
        return job

    return go


@pytest.fixture
def sent_requests(monkeypatch):
    """Every request the portal sends through `jobs.http.client()` (submits, polls,
    downloads), in order, with its body read; the requests still really go out, on a
    client made by the real factory (its timeouts, headers and limits)."""
    from jobs import http

    sent = []
    real_client = http.client

    async def record(request):
        await request.aread()
        sent.append(request)

    def recording_client():
        client = real_client()
        client.event_hooks["request"].append(record)
        return client

    monkeypatch.setattr(http, "client", recording_client)
    return sent


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """Browser tests last: Playwright's sync API keeps an event loop running in the main
    thread while its browser is open, and the worker code under test calls asyncio.run()
    (the browser is also closed after each module, so an xdist worker that runs unit
    tests after a browser module is safe).

    Under xdist (`bin/test` runs two workers), the tests that start whole portals go to
    groups that each run on one worker: the browser tests share one portal, and the
    fault tests (chaos) must not kill processes of a neighbour's portal or compete with
    each other for the machine."""
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)
    for item in items:
        if item.get_closest_marker("chaos"):
            item.add_marker(pytest.mark.xdist_group("chaos"))
        elif item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.xdist_group("portal"))


@pytest.fixture(scope="session")
def collected_static(tmp_path_factory):
    """A STATIC_ROOT filled by the release step's `collectstatic`, for the tests that run
    production processes: their manifest storage refuses a page naming a file that was not
    collected. Once per session, as compressing every file takes a while."""
    root = tmp_path_factory.mktemp("static")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", str(root)),
        "DJANGO_SETTINGS_MODULE": "upscaler_site.settings",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "VAR_DIR": str(tmp_path_factory.mktemp("var")),
        "STATIC_ROOT": str(root),
    }
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        check=True,
        timeout=300,
    )
    return root


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3-compatible server (moto) on loopback, for the whole session."""
    from tests.s3 import serve

    yield from serve(tmp_path_factory)


def _empty_redis_queues():
    from django.conf import settings

    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        for key in client.scan_iter(f"django_q:{settings.TASK_QUEUE_PREFIX}*"):
            client.delete(key)
        client.close()


@pytest.fixture(autouse=True)
def empty_broker_queues():
    """Each test starts with this process's broker queues empty, as its database starts
    empty: tasks an earlier test queued without a cluster to run them would otherwise
    count as a backlog (jobs.recovery.resend_lost then rightly re-sends nothing). The
    ORM broker's queue is a table, emptied with the test's transaction."""
    _empty_redis_queues()
    yield


@pytest.fixture(scope="session", autouse=True)
def empty_broker_queue_at_the_end():
    """Tasks queued by tests that never had a cluster to run them: gone with the run."""
    yield
    _empty_redis_queues()
