"""A job is claimed once, whoever asks and however often; the Job row is the truth."""

from datetime import timedelta
from unittest import mock

from django.utils import timezone

from jobs import lifecycle, pipeline, tasks
from jobs.models import Job
from jobs.providers.local import LocalProvider


def test_a_job_is_claimed_only_once(make_job, owner, team):
    job = make_job(owner, team, run=False)
    assert lifecycle.claim(job.pk) is True
    assert lifecycle.claim(job.pk) is False
    assert list(job.events.values_list("state", flat=True)) == ["queued", "submitting"]


def test_a_redelivered_submit_task_does_nothing(make_job, owner, team):
    job = make_job(owner, team, run=False)
    with mock.patch.object(LocalProvider, "submit", wraps=LocalProvider().submit) as submit:
        tasks.submit_job(job.pk)
        tasks.submit_job(job.pk)  # the broker handed the same task out again
    job.refresh_from_db()
    assert submit.call_count == 1
    assert job.state == Job.State.SUCCEEDED
    assert job.events.filter(state="submitting").count() == 1
    assert job.events.filter(state="succeeded").count() == 1


def test_a_canceled_job_is_never_submitted(make_job, owner, team):
    job = make_job(owner, team, run=False)
    assert lifecycle.cancel(job, by=owner)
    with mock.patch.object(LocalProvider, "submit") as submit:
        tasks.submit_job(job.pk)
    assert submit.call_count == 0
    job.refresh_from_db()
    assert job.state == Job.State.CANCELED


def test_cancel_during_the_upscale_discards_the_result(make_job, owner, team, settings):
    job = make_job(owner, team, run=False)
    real_apply = pipeline.apply

    def user_cancels_then_apply(j, result, frm):
        # The upscale is done; the user pressed Cancel while it ran.
        assert lifecycle.cancel(Job.objects.get(pk=j.pk), by=owner)
        return real_apply(j, result, frm)

    with mock.patch.object(pipeline, "apply", user_cancels_then_apply):
        tasks.submit_job(job.pk)
    job.refresh_from_db()
    assert job.state == Job.State.CANCELED
    assert not job.output_file
    assert "its result is discarded" in job.events.get(state="canceled").detail
    outputs = settings.MEDIA_ROOT / "outputs"
    assert not outputs.exists() or not any(p.is_file() for p in outputs.rglob("*"))


def test_states_only_move_forward(make_job, owner, team):
    job = make_job(owner, team)  # succeeded
    assert not lifecycle.move(job.pk, Job.ACTIVE_STATES, Job.State.FAILED, "late failure")
    assert not lifecycle.cancel(job, by=owner)
    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED


def test_a_crash_in_the_provider_fails_the_job_in_plain_words(make_job, owner, team):
    job = make_job(owner, team, run=False)
    with mock.patch.object(LocalProvider, "submit", side_effect=MemoryError):
        tasks.submit_job(job.pk)
    job.refresh_from_db()
    assert job.state == Job.State.FAILED
    assert job.error_code == "internal_error"
    assert "went wrong on our side" in job.error_message


def test_a_result_that_is_not_an_image_fails_the_job(make_job, owner, team):
    from jobs.providers import Finished

    job = make_job(owner, team, run=False)
    with mock.patch.object(LocalProvider, "submit", return_value=Finished(content=b"<html>")):
        tasks.submit_job(job.pk)
    job.refresh_from_db()
    assert job.state == Job.State.FAILED and job.error_code == "bad_result"


def test_the_sweep_requeues_forgotten_jobs(make_job, owner, team, inline_tasks):
    job = make_job(owner, team, run=False)
    Job.objects.filter(pk=job.pk).update(enqueued_at=timezone.now() - timedelta(minutes=6))
    with inline_tasks():
        assert pipeline.sweep()["requeued"] == 1
    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED


def test_the_sweep_fails_a_job_stuck_submitting_instead_of_resending(make_job, owner, team):
    # A provider that cannot be asked whether the job arrived (tests/test_recovery.py
    # has the local provider, which is run again, and Ximilar, which is asked).
    job = make_job(owner, team, run=False)
    lifecycle.claim(job.pk)
    Job.objects.filter(pk=job.pk).update(
        provider="pixazo", lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    with mock.patch.object(LocalProvider, "submit") as submit:
        assert pipeline.sweep()["stopped"] == 1
    assert submit.call_count == 0
    job.refresh_from_db()
    assert job.state == Job.State.FAILED and job.error_code == "unknown"
    assert "rather than sent twice" in job.error_message


def test_the_sweep_leaves_healthy_jobs_alone(make_job, owner, team):
    queued = make_job(owner, team, run=False)
    done = make_job(owner, team)
    assert pipeline.sweep() == {"requeued": 0, "stopped": 0, "released": 0}
    assert Job.objects.get(pk=queued.pk).state == Job.State.QUEUED
    assert Job.objects.get(pk=done.pk).state == Job.State.SUCCEEDED


def test_the_sweep_is_scheduled_by_a_migration(db):
    from django_q.models import Schedule

    schedule = Schedule.objects.get(name="jobs.sweep")
    assert schedule.func == "jobs.tasks.sweep" and schedule.minutes == 1


def test_the_cluster_cannot_lease_a_task_twice_while_it_may_run(settings):
    q = settings.Q_CLUSTER
    assert q["retry"] > q["timeout"] * 2  # lease outlives local wait + run
    assert q["max_attempts"] >= 1 and q["ack_failures"] is True
