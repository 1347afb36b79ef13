"""Files that expire: inputs and results are kept RETENTION_DAYS after a job finished,
then deleted in batches; the job's row, history and cost stay. Every test runs on a
frozen clock (django.utils.timezone.now is pinned, and moved on by hand)."""

import datetime
import io
import re

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule

from billing.models import LedgerEntry
from jobs import intake, pipeline, retention, tasks
from jobs.imaging import human_bytes
from jobs.models import Job

FILES = ("input_file", "input_thumb", "output_file", "output_thumb")


class Clock:
    def __init__(self, monkeypatch):
        self.now = timezone.now().replace(microsecond=0)
        monkeypatch.setattr(timezone, "now", lambda: self.now)

    def advance(self, **delta):
        self.now += datetime.timedelta(**delta)


@pytest.fixture
def clock(monkeypatch):
    return Clock(monkeypatch)


@pytest.fixture
def finished(make_job, owner, team, clock):
    """finished(days_ago, **kwargs) -> a job that succeeded `days_ago` days before now,
    with its four files stored, and its file names."""

    def make(days_ago, **kwargs):
        job = make_job(owner, team, **kwargs)
        assert job.state == Job.State.SUCCEEDED
        pipeline.output_thumb(job)  # as when someone first looked at the result
        Job.objects.filter(pk=job.pk).update(
            finished_at=clock.now - datetime.timedelta(days=days_ago)
        )
        job.refresh_from_db()
        return job

    return make


def names(job) -> list[str]:
    return [getattr(job, field).name for field in FILES]


def stored(name_list) -> list[bool]:
    # "" (a file not made yet, e.g. a result's thumbnail nobody looked at) is not stored.
    return [bool(name) and default_storage.exists(name) for name in name_list]


# --- purge ---------------------------------------------------------------------------------


def test_a_job_finished_31_days_ago_loses_its_files(finished, clock):
    job = finished(31)
    kept = names(job)
    assert all(kept) and all(stored(kept))

    report = retention.purge(clock.now)

    assert not any(stored(kept))
    job.refresh_from_db()
    assert job.files_expired_at == clock.now
    assert [getattr(job, field).name for field in FILES] == ["", "", "", ""]
    # The row and its history stay.
    assert job.state == Job.State.SUCCEEDED and job.input_name == "photo.png"
    assert job.output_width and job.input_bytes
    assert report.jobs == 1 and report.files == 4
    assert report.bytes == job.input_bytes + job.output_bytes


def test_a_job_finished_29_days_ago_keeps_its_files(finished, clock):
    job = finished(29)
    report = retention.purge(clock.now)
    assert all(stored(names(job)))
    job.refresh_from_db()
    assert job.files_expired_at is None and report.jobs == 0


def test_active_jobs_never_lose_their_files(make_job, owner, team, clock):
    job = make_job(owner, team, run=False)  # stays queued
    # Whatever its timestamps say, an active job is not finished.
    Job.objects.filter(pk=job.pk).update(finished_at=clock.now - datetime.timedelta(days=90))
    clock.advance(days=90)
    retention.purge(clock.now)
    job.refresh_from_db()
    assert job.files_expired_at is None
    assert all(stored([job.input_file.name, job.input_thumb.name]))


def test_retention_days_0_keeps_everything(finished, clock, settings):
    settings.RETENTION_DAYS = 0
    job = finished(3650)
    report = retention.purge(clock.now)
    assert report.jobs == 0 and all(stored(names(job)))
    assert list(retention.expired_jobs(clock.now)) == []


def test_a_shared_input_stays_while_a_job_within_retention_uses_it(
    finished, owner, team, clock, inline_tasks
):
    original = finished(20)
    # "Run again" reuses the original's input file.
    with inline_tasks():
        (again,) = intake.rerun(original, user=owner, choices=[("local", {"scale": 3})])
    pipeline.output_thumb(Job.objects.get(pk=again.pk))
    again.refresh_from_db()
    assert again.input_file.name == original.input_file.name
    clock.advance(days=20)  # the original finished 40 days ago, the rerun 20

    report = retention.purge(clock.now)

    original.refresh_from_db()
    assert original.files_expired_at == clock.now and not original.input_file
    # The original's result went; the shared input is still the rerun's.
    assert stored([again.input_file.name, again.input_thumb.name]) == [True, True]
    assert all(stored(names(again)))
    assert report.files == 2  # the original's result and its thumbnail
    assert report.bytes == original.output_bytes
    # The input is still stored and still counted once, now by the job that keeps it.
    assert retention.stored_bytes([team.pk]) == {team.pk: again.input_bytes + again.output_bytes}

    clock.advance(days=11)  # the rerun is past retention too: now the input goes
    report = retention.purge(clock.now)
    assert not any(stored(names(again)))
    assert report.jobs == 1 and report.files == 4


def test_an_input_shared_by_a_batch_is_deleted_and_counted_once(owner, team, clock, inline_tasks):
    from tests.images import upload

    with inline_tasks():
        jobs = intake.submit_uploads(
            user=owner,
            team=team,
            files=[upload("pair.png")],
            choices=[("local", {"scale": 2}), ("local", {"scale": 3})],
        )
    Job.objects.filter(pk__in=[j.pk for j in jobs]).update(
        finished_at=clock.now - datetime.timedelta(days=31)
    )
    for job in jobs:
        pipeline.output_thumb(Job.objects.get(pk=job.pk))  # both results were looked at
    first, second = (Job.objects.get(pk=j.pk) for j in jobs)
    assert first.input_file.name == second.input_file.name

    report = retention.purge(clock.now, batch=1)  # one job per batch: shared across batches

    assert not any(stored(names(first) + names(second)))
    assert report.jobs == 2 and report.files == 6  # one input, one input thumb, 2 + 2 results
    assert report.bytes == first.input_bytes + first.output_bytes + second.output_bytes


def test_it_purges_in_batches_until_done_and_a_second_run_does_nothing(finished, clock):
    jobs = [finished(31 + n, name=f"p{n}.png") for n in range(5)]
    kept = finished(5, name="recent.png")

    report = retention.purge(clock.now, batch=2)

    assert report.jobs == 5 and report.batches == 3
    assert Job.objects.filter(files_expired_at=clock.now).count() == 5
    assert not any(stored([name for job in jobs for name in names(job)]))
    assert all(stored(names(kept)))

    again = retention.purge(clock.now, batch=2)
    assert (again.jobs, again.files, again.bytes) == (0, 0, 0)


def test_a_purge_killed_midway_is_finished_by_the_next_one(finished, clock, monkeypatch):
    first, second = finished(31, name="a.png"), finished(32, name="b.png")
    # A file already gone (a run killed after deleting, before marking) is fine.
    default_storage.delete(first.output_file.name)

    real_mark = retention._mark
    calls = []

    def killed_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt  # the process dies after deleting a batch's files
        return real_mark(*args, **kwargs)

    monkeypatch.setattr(retention, "_mark", killed_once)
    with pytest.raises(KeyboardInterrupt):
        retention.purge(clock.now, batch=1)
    monkeypatch.setattr(retention, "_mark", real_mark)

    retention.purge(clock.now, batch=1)
    assert Job.objects.filter(files_expired_at__isnull=False).count() == 2
    assert not any(stored(names(first) + names(second)))


def test_the_ledger_rows_are_untouched(finished, clock):
    finished(31)
    finished(40, name="other.png")
    before = list(LedgerEntry.objects.order_by("pk").values())
    assert before
    retention.purge(clock.now)
    assert list(LedgerEntry.objects.order_by("pk").values()) == before


# --- the command and the schedule -------------------------------------------------------


def test_the_dry_run_deletes_nothing_and_prints_what_would_go(finished, clock, team):
    old, recent = finished(31, name="old.png"), finished(2, name="new.png")
    out = io.StringIO()
    call_command("purge", "--dry-run", stdout=out)
    text = out.getvalue()

    assert all(stored(names(old))) and all(stored(names(recent)))
    assert Job.objects.filter(files_expired_at__isnull=False).count() == 0
    assert f"#{old.pk}" in text and f"#{recent.pk}" not in text
    assert "Dry run" in text and "would delete" in text
    assert team.name in text and human_bytes(old.input_bytes + old.output_bytes) in text


def test_the_command_purges_as_of_a_given_time(finished, clock, team):
    job = finished(10)
    kept = names(job)
    out = io.StringIO()
    when = (clock.now + datetime.timedelta(days=25)).isoformat()
    call_command("purge", "--now", when, stdout=out)
    job.refresh_from_db()
    assert job.files_expired_at is not None and not any(stored(kept))
    assert re.search(rf"{team.name}: 1 job, 4 files", out.getvalue())


def test_the_daily_schedule_exists_after_migrate(db):
    schedule = Schedule.objects.get(name="purge-expired-files")
    assert schedule.func == "jobs.tasks.purge_expired"
    assert schedule.schedule_type == Schedule.DAILY and schedule.repeats == -1
    assert not schedule.args and not schedule.kwargs  # ids-only tasks: nothing to swallow


def test_the_task_purges_as_of_now_and_records_the_run(finished, clock):
    job = finished(31)
    result = tasks.purge_expired()
    job.refresh_from_db()
    assert job.files_expired_at == clock.now and result["jobs"] == 1
    last = retention.last_purge()
    assert last.beat_at == clock.now and last.detail["jobs"] == 1


# --- pages of an expired job ---------------------------------------------------------------


@pytest.fixture
def expired(finished, clock, settings):
    settings.RETENTION_DAYS = 30
    job = finished(31)
    retention.purge(clock.now)
    job.refresh_from_db()
    return job


def test_the_job_page_says_the_files_were_deleted(owner_client, expired, clock):
    html = owner_client.get(f"/jobs/{expired.pk}/").content.decode()
    assert (
        f"The files of this job were deleted on {clock.now:%Y-%m-%d} after 31 days, "
        "as this portal keeps files for 30 days. Its history and cost stay." in html
    )
    assert "img-comparison-slider" not in html.split("</head>")[1]
    assert f"/jobs/{expired.pk}/download/" not in html
    assert f"/jobs/{expired.pk}/input/" not in html and f"/jobs/{expired.pk}/output/" not in html
    assert f'action="/jobs/{expired.pk}/rerun/"' not in html  # its original is gone
    assert "Cost" in html and "Timeline" in html


def test_the_history_row_shows_a_placeholder(owner_client, expired):
    html = owner_client.get(f"/jobs/{expired.pk}/row/").content.decode()
    assert "/thumb/" not in html and "files deleted" in html


@pytest.mark.parametrize(
    "url", ["/jobs/{pk}/download/", "/jobs/{pk}/input/image/", "/jobs/{pk}/output/thumb/"]
)
def test_its_files_answer_gone_with_a_plain_message(owner_client, expired, url):
    response = owner_client.get(url.format(pk=expired.pk))
    assert response.status_code == 410
    assert "deleted" in response.content.decode()


def test_it_cannot_be_run_again(owner_client, expired):
    response = owner_client.post(
        f"/jobs/{expired.pk}/rerun/", {"provider": "local", "local-scale": "2"}
    )
    assert response.status_code == 422
    assert "deleted" in response.content.decode()
    assert Job.objects.count() == 1


def test_the_compare_page_shows_placeholders(owner_client, expired):
    html = owner_client.get(f"/jobs/batch/{expired.batch}/compare/").content.decode()
    assert "/thumb/" not in html and "files deleted" in html


def test_another_teams_expired_job_is_still_not_found(client, outsider, expired):
    client.force_login(outsider)
    assert client.get(f"/jobs/{expired.pk}/download/").status_code == 404


# --- stored bytes on the spend page ------------------------------------------------------------


def test_the_spend_page_shows_each_teams_stored_bytes(
    client, finished, owner, outsider, team, other_team, make_job, clock, inline_tasks, settings
):
    settings.RETENTION_DAYS = 30
    gone = finished(31, name="gone.png")
    original = finished(3, name="kept.png")
    with inline_tasks():
        (again,) = intake.rerun(original, user=owner, choices=[("local", {"scale": 3})])
    pipeline.output_thumb(Job.objects.get(pk=again.pk))
    again.refresh_from_db()
    theirs = make_job(outsider, other_team, name="theirs.png")
    retention.purge(clock.now)

    # The shared input once, both results; not the deleted job's files, not thumbnails.
    ours = original.input_bytes + original.output_bytes + again.output_bytes
    assert retention.stored_bytes([team.pk]) == {team.pk: ours}
    assert gone.input_bytes  # (it had files: they are no longer counted)

    client.force_login(owner)  # a manager of Studio only
    html = client.get("/spend/").content.decode()
    box = html[html.index('id="stored"') :]
    assert f"{human_bytes(ours)} stored" in box and "files kept 30 days" in box
    assert other_team.name not in box.split("</section>")[0]

    client.force_login(outsider)
    html = client.get("/spend/").content.decode()
    mine = theirs.input_bytes + theirs.output_bytes
    assert f"{human_bytes(mine)} stored" in html[html.index('id="stored"') :]


def test_the_spend_page_says_when_files_are_kept_for_ever(owner_client, finished, settings):
    settings.RETENTION_DAYS = 0
    finished(1)
    html = owner_client.get("/spend/").content.decode()
    assert "files kept for ever" in html[html.index('id="stored"') :]


def test_stored_bytes_is_one_query(django_assert_num_queries, finished, team, other_team):
    finished(1)
    with django_assert_num_queries(1):
        retention.stored_bytes([team.pk, other_team.pk])


def test_human_bytes_speaks_gigabytes():
    assert human_bytes(int(1.2 * 1024**3)) == "1.2 GB"


@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_each_existing_input_one_owner():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("jobs", "0009_job_retrying_since")]
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    team = old.get_model("billing", "Team").objects.create(name="Old")
    OldJob = old.get_model("jobs", "Job")

    def job(name):
        return OldJob.objects.create(
            team=team,
            provider="local",
            input_name="p.png",
            input_file=name,
            input_format="PNG",
            input_width=10,
            input_height=10,
            input_bytes=100,
        ).pk

    # A batch of three sharing one input (or a job and its reruns), and one alone.
    shared = [job("inputs/shared.png") for _ in range(3)]
    alone = job("inputs/alone.png")

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(latest)

    owners = dict(Job.objects.values_list("pk", "input_owner"))
    assert [owners[pk] for pk in shared] == [True, False, False]
    assert owners[alone] is True
    assert retention.stored_bytes([team.pk]) == {team.pk: 200}
