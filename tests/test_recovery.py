"""Recovery by lease (issue #8): work lost with a worker or a cluster is found by the
job's own records within seconds, never sent to a provider twice; retries of a busy
provider spread over RETRY_BUDGET_SECONDS; an expired result link is replaced by a
fresh poll where the provider issues new ones.

Time is never waited for. A job "waits" by having its recorded times moved back (its
history happened earlier, which is all the code can see), and what is scheduled is then
due at once, as `Sandbox.settle` does."""

import time
from datetime import timedelta

import pytest
from django.db.models import DateTimeField, F
from django.utils import timezone
from django_q.brokers import get_broker

from jobs import leases, lifecycle, pipeline, tasks
from jobs.models import Job, JobEvent
from jobs.providers import Finished, get_provider
from jobs.sandbox import engine
from jobs.sandbox.models import SandboxTask
from jobs.tracker import Tracker
from tests.support import timeline, wait_until

State = Job.State
LOST_FOR = 45  # seconds: the issue wants lost work found within 60 s


# --- helpers --------------------------------------------------------------------------------
def travel(job, seconds):
    """Let `seconds` pass for this job: every time it recorded (its timeline included)
    moves back, and whatever it has scheduled falls due now."""
    gap = timedelta(seconds=seconds)
    moved = {
        f.name: F(f.name) - gap
        for f in Job._meta.concrete_fields
        if isinstance(f, DateTimeField) and f.name != "next_poll_at"
    }
    Job.objects.filter(pk=job.pk).update(**moved)
    Job.objects.filter(pk=job.pk, next_poll_at__isnull=False).update(next_poll_at=timezone.now())
    JobEvent.objects.filter(job_id=job.pk).update(at=F("at") - gap)


def tick():
    tracker = Tracker()
    try:
        tracker.tick()
    finally:
        tracker.close()


@pytest.fixture
def lose(monkeypatch):
    """lose("jobs.tasks.submit_job"): tasks of that kind vanish when queued, like the
    ones a killed cluster had taken from Redis; returns the list of the lost job ids."""
    real = tasks.async_task
    lost = {}

    def maybe(func, *args, **kwargs):
        if func in lost:
            lost[func].append(args[0])
            return None
        return real(func, *args, **kwargs)

    monkeypatch.setattr(tasks, "async_task", maybe)

    def start(func):
        lost[func] = []
        return lost[func]

    start.stop = lambda func: lost.pop(func)
    return start


def provider_submits(sent, slug):
    """The submits (POSTs) among the requests the portal sent."""
    return [r for r in sent if r.method == "POST" and f"/sandbox/{slug}/" in str(r.url)]


# --- lost queued tasks ---------------------------------------------------------------------------
def test_a_lost_queued_job_is_sent_again_by_the_next_tick_once_the_broker_is_empty(
    make_job, owner, team, inline_tasks
):
    # The upload's task never reaches a worker (enqueued while nothing runs it: lost).
    lost = make_job(owner, team, run=False)
    travel(lost, LOST_FOR)
    fresh = make_job(owner, team, run=False)  # just queued: its task is on its way
    with inline_tasks():
        tick()
    lost.refresh_from_db()
    assert lost.state == State.SUCCEEDED, timeline(lost)
    assert lost.attempts == 1
    assert Job.objects.get(pk=fresh.pk).state == State.QUEUED


def test_a_busy_broker_gets_no_duplicates(
    make_job, owner, team, monkeypatch, django_capture_on_commit_callbacks
):
    # Three tasks queued after ours are still waiting in the broker: ours can be waiting
    # there too, so it is not sent again.
    broker = get_broker()
    broker.purge_queue()
    job = make_job(owner, team, run=False)
    travel(job, LOST_FOR)
    sent = []
    monkeypatch.setattr(tasks, "async_task", lambda func, *args, **kw: sent.append(args))

    def tick_and_send():
        with django_capture_on_commit_callbacks(execute=True):
            tick()

    try:
        for n in range(3):
            broker.enqueue(f"not a real task {n}")
        assert broker.queue_size() == 3
        tick_and_send()
        assert sent == []
        assert Job.objects.get(pk=job.pk).state == State.QUEUED
        # Once the broker has drained, the job can be nowhere but lost.
        broker.purge_queue()
        tick_and_send()
        assert sent == [(job.pk,)]
        # It was just sent: the next tick leaves it alone (no resend storm).
        tick_and_send()
        assert sent == [(job.pk,)]
    finally:
        broker.purge_queue()


# --- interrupted submits ---------------------------------------------------------------------
def interrupted_submit(job):
    """The worker claimed the job and died before it recorded the provider's answer, and
    the claim's lease has since run out."""
    assert lifecycle.claim(job.pk)
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))


def test_an_interrupted_local_upscale_is_run_again(make_job, owner, team, inline_tasks):
    job = make_job(owner, team, run=False)
    interrupted_submit(job)
    with inline_tasks():
        tick()
    job.refresh_from_db()
    assert job.state == State.SUCCEEDED, timeline(job)
    assert job.attempts == 2
    assert "stopped while upscaling" in timeline(job)


def test_a_submit_whose_lease_is_still_running_is_left_alone(make_job, owner, team):
    job = make_job(owner, team, run=False)
    assert lifecycle.claim(job.pk)
    job.refresh_from_db()
    assert job.lease_owner and job.lease_expires_at > timezone.now()
    tick()
    assert Job.objects.get(pk=job.pk).state == State.SUBMITTING


def test_a_live_worker_keeps_renewing_its_lease(transactional_db, make_job, owner, team, lose):
    lose("jobs.tasks.submit_job")
    job = make_job(owner, team, run=False)
    holder = leases.new_owner()
    assert lifecycle.claim(job.pk, holder)
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now())  # about to run out
    with leases.kept(job.pk, holder, seconds=0.3):
        # A step longer than its lease (a big upscale, a slow upload) keeps it.
        wait_until(
            lambda: Job.objects.get(pk=job.pk).lease_expires_at > timezone.now(),
            message="the lease was not renewed",
        )


def test_an_interrupted_submit_is_never_resent_to_a_provider_that_cannot_be_asked(
    sandbox, submit, lose, sent_requests
):
    lose("jobs.tasks.submit_job")
    job = submit("pixazo")
    interrupted_submit(job)
    tick()
    job.refresh_from_db()
    assert job.state == State.FAILED, timeline(job)
    assert job.error_code == "unknown"
    assert "rather than sent twice" in job.error_message
    assert provider_submits(sent_requests, "pixazo") == []
    assert not SandboxTask.objects.filter(provider="pixazo").exists()


def test_an_interrupted_ximilar_submit_is_found_by_our_marker_and_finishes(
    sandbox, submit, lose, sent_requests
):
    sandbox.faults("ximilar", webhook="off")
    other = sandbox.settle(submit("ximilar"))  # someone else's request in the same list
    assert other.state == State.SUCCEEDED
    lost = lose("jobs.tasks.submit_job")
    job = submit("ximilar")
    assert lost == [job.pk]
    interrupted_submit(job)
    # The dying worker's request did reach Ximilar; its answer never got saved.
    answer = pipeline.run(get_provider("ximilar").submit, Job.objects.get(pk=job.pk))
    tick()
    job.refresh_from_db()
    assert job.state == State.RUNNING, timeline(job)
    assert job.provider_task_id == answer.task_id
    assert "found it" in timeline(job)
    job = sandbox.settle(job)
    assert job.state == State.SUCCEEDED, timeline(job)
    assert SandboxTask.objects.filter(provider="ximilar").count() == 2  # never sent twice
    assert len(provider_submits(sent_requests, "ximilar")) == 2


def test_an_interrupted_ximilar_submit_that_never_arrived_is_stopped_not_resent(
    sandbox, submit, lose, sent_requests
):
    sandbox.faults("ximilar", webhook="off")
    lose("jobs.tasks.submit_job")
    job = submit("ximilar")
    interrupted_submit(job)  # died before the request left
    tick()
    job.refresh_from_db()
    assert job.state == State.FAILED, timeline(job)
    assert job.error_code == "not_received"
    assert "has no record of it" in job.error_message
    assert provider_submits(sent_requests, "ximilar") == []
    assert not SandboxTask.objects.filter(provider="ximilar").exists()


# --- interrupted and lost downloads -------------------------------------------------------------
def fetching(sandbox, submit, lose, slug="ximilar"):
    """A job whose result is ready to download, its download task lost."""
    sandbox.faults(slug, webhook="off")
    lose("jobs.tasks.finish_job")
    job = sandbox.settle(submit(slug), until=lambda j: j.state == State.FETCHING)
    lose.stop("jobs.tasks.finish_job")
    return job


def test_an_interrupted_download_is_tried_again_when_its_lease_runs_out(sandbox, submit, lose):
    job = fetching(sandbox, submit, lose)
    # A worker took the download and died with it.
    Job.objects.filter(pk=job.pk).update(
        lease_owner="worker-1:4242", lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    tick()
    job.refresh_from_db()
    assert job.state == State.SUCCEEDED, timeline(job)


def test_a_download_whose_lease_is_still_running_is_left_alone(sandbox, submit, lose):
    job = fetching(sandbox, submit, lose)
    Job.objects.filter(pk=job.pk).update(
        lease_owner="worker-1:4242", lease_expires_at=timezone.now() + timedelta(seconds=30)
    )
    tick()
    assert Job.objects.get(pk=job.pk).state == State.FETCHING


def test_a_lost_download_task_is_sent_again(sandbox, submit, lose):
    job = fetching(sandbox, submit, lose)
    travel(job, LOST_FOR)
    tick()
    job.refresh_from_db()
    assert job.state == State.SUCCEEDED, timeline(job)


# --- a busy provider: retries spread over the budget ----------------------------------------
def storm(sandbox, slug, on, **faults):
    if on:
        sandbox.faults(slug, webhook="off", error_count=10**6, **faults)
    else:
        sandbox.faults(slug, webhook="off")


def ride(sandbox, job, slug, storm_seconds, **faults):
    """Drive the job through a storm of errors lasting `storm_seconds` (from the first
    attempt), letting time pass for the job by what it schedules. Returns the job, how
    long it took, and the waits it scheduled while queued for a retry."""
    clock, waits, raging = 0.0, [], True
    started = time.monotonic()  # the real time the attempts took counts too
    tracker = Tracker()
    try:
        for _ in range(300):
            job.refresh_from_db()
            if job.state in Job.FINAL_STATES:
                return job, clock + time.monotonic() - started, waits
            if raging and clock >= storm_seconds:
                storm(sandbox, slug, on=False)
                raging = False
            if job.next_poll_at is not None:
                wait = max((job.next_poll_at - timezone.now()).total_seconds(), 0.0)
                if job.state == State.QUEUED:
                    # The delay as scheduled (from the move that set it), not what is
                    # left of it by now: a loaded machine must not make it look short.
                    waits.append((job.next_poll_at - job.updated_at).total_seconds())
                travel(job, wait)
                clock += wait
            tracker.tick()
    finally:
        tracker.close()
    raise AssertionError(f"job {job.pk} still {job.state}: {timeline(job)}")


def test_a_25_second_storm_of_429s_fails_nothing(sandbox, submit, settings):
    storm(sandbox, "ximilar", on=True, error_status=429, error_on="submit", retry_after=2)
    job = submit("ximilar")
    job, took, waits = ride(sandbox, job, "ximilar", storm_seconds=25)
    assert job.state == State.SUCCEEDED, timeline(job)
    assert took >= 25 and job.attempts >= 3
    # Exponential with jitter (half to all of 1, 2, 4... s, capped), and never sooner
    # than the 2 s of Retry-After.
    for attempt, wait in enumerate(waits, start=1):
        step = min(settings.RETRY_MAX_DELAY, 2 ** (attempt - 1))
        assert max(2, step / 2) - 0.1 <= wait <= max(2, step), (attempt, waits)
    assert SandboxTask.objects.filter(provider="ximilar").count() == 1


def test_a_storm_longer_than_the_budget_fails_the_job_saying_how_long_we_tried(
    sandbox, submit, settings
):
    storm(sandbox, "ximilar", on=True, error_status=429, error_on="submit")
    job = submit("ximilar")
    job, took, waits = ride(sandbox, job, "ximilar", storm_seconds=float("inf"))
    budget = settings.RETRY_BUDGET_SECONDS
    assert job.state == State.FAILED
    assert job.error_code == "throttled"
    assert "We kept trying for 5 minutes" in job.error_message
    assert "nothing was charged" in job.error_message
    # The whole budget, and no more than the last attempt's own time beyond it.
    assert budget - 1 <= took <= budget + 5
    assert max(waits) <= 60  # capped, however many attempts
    assert not SandboxTask.objects.filter(provider="ximilar").exists()


def test_a_two_minute_storm_while_polling_fails_nothing(sandbox, submit):
    job = submit("ximilar")
    storm(sandbox, "ximilar", on=True, error_status=503, error_on="poll")
    job, took, _ = ride(sandbox, job, "ximilar", storm_seconds=120)
    assert job.state == State.SUCCEEDED, timeline(job)
    assert took >= 120
    assert job.attempts == 1


# --- expired result links ------------------------------------------------------------------------
@pytest.mark.parametrize("slug", ["pixazo", "ximilar", "apixo", "fal"])
def test_an_expired_result_link_is_replaced_by_a_fresh_poll(
    slug, sandbox, submit, lose, sent_requests
):
    job = fetching(sandbox, submit, lose, slug)
    task = SandboxTask.objects.get(provider=slug)
    # The download task waited too long: the link we were given has expired since.
    Job.objects.filter(pk=job.pk).update(result_url=engine.result_url(task, ttl=-60))
    polls_before = len(sent_requests)
    tasks.finish_job(job.pk)
    job.refresh_from_db()
    assert job.state == State.SUCCEEDED, timeline(job)
    assert any("/sandbox/files/" not in str(r.url) for r in sent_requests[polls_before:])


def test_a_fresh_poll_that_gives_the_same_dead_link_fails_plainly(
    sandbox, submit, lose, monkeypatch
):
    job = fetching(sandbox, submit, lose)
    task = SandboxTask.objects.get(provider="ximilar")
    dead = engine.result_url(task, ttl=-60)
    Job.objects.filter(pk=job.pk).update(result_url=dead)
    provider = type(get_provider("ximilar"))
    asked = []

    async def same_link(self, job, http):
        asked.append(job.pk)
        return Finished(url=dead, task_id=job.provider_task_id)

    monkeypatch.setattr(provider, "poll", same_link)
    tasks.finish_job(job.pk)
    job.refresh_from_db()
    assert asked == [job.pk]
    assert job.state == State.FAILED
    assert job.error_code == "result_expired"
    assert job.error_message == (
        "The result link from Ximilar expired before we could download it, and asking "
        "Ximilar again gave the same expired link."
    )
