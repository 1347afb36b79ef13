import pytest
from django.contrib.auth import get_user_model
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
    upload page makes it; with run=False it stays queued."""
    from jobs import intake
    from tests.images import upload

    def make(user, team, name="photo.png", scale=2, run=True, **image):
        files = [upload(name, **image)]
        if run:
            with inline_tasks():
                (job,) = intake.submit_uploads(
                    user=user, team=team, files=files, choices=[("local", {"scale": scale})]
                )
        else:
            (job,) = intake.submit_uploads(
                user=user, team=team, files=files, choices=[("local", {"scale": scale})]
            )
        job.refresh_from_db()
        return job

    return make
