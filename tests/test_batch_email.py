""" "E-mail me when this batch ends": one e-mail when a long batch is over, never two."""

import datetime
import uuid
from decimal import Decimal

import pytest
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from billing import money
from billing.models import LedgerEntry
from jobs import lifecycle, notices
from jobs.models import BatchEmail, Job
from tests.images import upload
from tests.rows import bare_job

pytestmark = pytest.mark.django_db
State = Job.State


@pytest.fixture
def batch_of(team, owner, settings, sync_tasks):
    """batch_of(n, minutes=..., asked=...): n running jobs of one batch started `minutes`
    ago. Tasks run at once (sync), so a queued e-mail is in the outbox on commit."""
    settings.PUBLIC_BASE_URL = "https://portal.example"
    settings.BATCH_EMAIL_AFTER_SECONDS = 180

    def make(n=2, minutes=10, asked=True, user=owner):
        batch = uuid.uuid4()
        jobs = [
            bare_job(
                team,
                batch=batch,
                created_by=user,
                provider="pixazo",
                state=State.RUNNING,
                email_when_done=asked,
            )
            for _ in range(n)
        ]
        started = timezone.now() - datetime.timedelta(minutes=minutes)
        Job.objects.filter(batch=batch).update(created_at=started)
        return jobs

    return make


def succeed(job):
    return lifecycle.move(
        job.pk, [State.RUNNING], State.SUCCEEDED, "done", output_width=2000, output_height=2000
    )


def fail(job):
    return lifecycle.fail(job.pk, [State.RUNNING], "provider_error", "It broke.")


def finish_all(capture, jobs, how=succeed):
    with capture(execute=True):
        for job in jobs:
            how(job)


def test_a_long_batch_sends_one_email_when_its_last_job_ends(
    batch_of, mailoutbox, django_capture_on_commit_callbacks
):
    first, last = batch_of(2)
    finish_all(django_capture_on_commit_callbacks, [first])
    assert mailoutbox == []  # one job still running
    finish_all(django_capture_on_commit_callbacks, [last])
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == ["alice@example.com"]
    assert BatchEmail.objects.get(batch=first.batch).to == "alice@example.com"


def test_a_short_batch_sends_nothing(batch_of, mailoutbox, django_capture_on_commit_callbacks):
    finish_all(django_capture_on_commit_callbacks, batch_of(2, minutes=2))
    assert mailoutbox == []
    assert not BatchEmail.objects.exists()


def test_nothing_unless_someone_asked(batch_of, mailoutbox, django_capture_on_commit_callbacks):
    finish_all(django_capture_on_commit_callbacks, batch_of(2, asked=False))
    assert mailoutbox == []


def test_nothing_without_an_email_address(
    batch_of, owner, mailoutbox, django_capture_on_commit_callbacks
):
    owner.email = ""
    owner.save()
    finish_all(django_capture_on_commit_callbacks, batch_of(2))
    assert mailoutbox == []
    assert not BatchEmail.objects.exists()


def test_the_hook_running_twice_sends_one_email(
    batch_of, mailoutbox, django_capture_on_commit_callbacks
):
    jobs = batch_of(2)
    finish_all(django_capture_on_commit_callbacks, jobs)
    notices.job_ended(jobs[0].pk)  # a second look, as after a redelivered task
    notices.job_ended(jobs[1].pk)
    assert len(mailoutbox) == 1


def test_two_jobs_ending_together_send_one_email(
    batch_of, mailoutbox, django_capture_on_commit_callbacks
):
    jobs = batch_of(2)
    # Both end in one transaction: both hooks find the batch over and queue the e-mail.
    with django_capture_on_commit_callbacks(execute=True) as hooks, transaction.atomic():
        succeed(jobs[0])
        succeed(jobs[1])
    assert len(hooks) == 2
    assert len(mailoutbox) == 1


def test_two_tasks_racing_send_one_email(batch_of, mailoutbox, django_capture_on_commit_callbacks):
    jobs = batch_of(2)
    with django_capture_on_commit_callbacks(execute=False):  # the hooks do not run
        for job in jobs:
            succeed(job)
    # Both tasks were queued before either claimed: the unique batch decides.
    assert notices.send_batch_email(jobs[0].batch) is True
    assert notices.send_batch_email(jobs[0].batch) is False
    assert len(mailoutbox) == 1


def test_the_email_has_the_counts_the_cost_and_the_link(
    batch_of, mailoutbox, django_capture_on_commit_callbacks
):
    jobs = batch_of(3)
    with django_capture_on_commit_callbacks(execute=True):
        succeed(jobs[0])
        succeed(jobs[1])
        fail(jobs[2])
    (mail,) = mailoutbox
    batch = jobs[0].batch
    cost = LedgerEntry.objects.filter(job__batch=batch, kind="charge").aggregate(s=Sum("amount"))
    assert cost["s"] > Decimal(0)
    assert mail.subject == "Your 3 upscale jobs finished: 2 succeeded, 1 failed"
    assert "Your batch of 3 jobs has ended: 2 succeeded, 1 failed." in mail.body
    assert f"Cost: {money.usd(cost['s'])}" in mail.body
    assert "Took: about 10 minutes" in mail.body
    assert f"https://portal.example/jobs/?batch={batch}" in mail.body


def test_the_upload_form_stores_the_choice_on_each_job(owner_client, owner):
    page = owner_client.get("/").content.decode()
    assert 'name="email_when_done"' in page
    assert "if it takes more than 3 minutes" in page
    owner_client.post(
        "/",
        {
            "images": [upload("a.png"), upload("b.png")],
            "provider": ["local"],
            "local-scale": "2",
            "email_when_done": "on",
        },
    )
    assert list(Job.objects.values_list("email_when_done", flat=True)) == [True, True]
    owner_client.post("/", {"images": [upload("c.png")], "provider": ["local"], "local-scale": "2"})
    assert Job.objects.filter(email_when_done=False).count() == 1


# --- What notify.js asks while its tab is hidden ----------------------------------------


def test_batch_states_answers_each_jobs_state(owner_client, team, owner):
    batch = uuid.uuid4()
    running = bare_job(team, batch=batch, created_by=owner, state=State.RUNNING)
    done = bare_job(team, batch=batch, created_by=owner, state=State.SUCCEEDED)
    response = owner_client.get(f"/jobs/batch/{batch}/states/")
    assert response.status_code == 200
    assert response.json() == {"jobs": {str(running.pk): "running", str(done.pk): "succeeded"}}


def test_batch_states_of_another_team_are_not_found(client, outsider, team, owner):
    batch = uuid.uuid4()
    bare_job(team, batch=batch, created_by=owner, state=State.RUNNING)
    client.force_login(outsider)
    assert client.get(f"/jobs/batch/{batch}/states/").status_code == 404
    assert client.get(f"/jobs/batch/{uuid.uuid4()}/states/").status_code == 404
