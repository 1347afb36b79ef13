"""Never pay twice (issue #12): the same image (by content), provider and options as a
succeeded job of the team whose result is still stored reuses that result for free.

Pixazo with an API key is a real, priced provider; a reused job is never sent anywhere,
so these tests need no network. Originals are finished the way the pipeline finishes a
job (lifecycle.move to succeeded with a stored result), which charges them."""

import csv
import datetime
import hashlib
import io
from decimal import Decimal

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.utils import timezone

from billing.models import LedgerEntry, Team
from jobs import deletion, intake, lifecycle, retention, reuse, tasks
from jobs.api import tokens
from jobs.models import Job
from tests.images import image_bytes, upload

PHOTO = image_bytes(96, 80)
SHA = hashlib.sha256(PHOTO).hexdigest()


@pytest.fixture
def real_pixazo(settings):
    settings.PROVIDER_SETTINGS = {
        **settings.PROVIDER_SETTINGS,
        "pixazo": {"api_key": "test-key", "base_url": ""},
    }
    return settings


def submit(user, team, data=PHOTO, scale=2, **kwargs) -> Job:
    (job,) = intake.submit_uploads(
        user=user,
        team=team,
        files=[upload("photo.png", data=data)],
        choices=[("pixazo", {"scale": scale})],
        **kwargs,
    )
    job.refresh_from_db()
    return job


def finish(job: Job) -> Job:
    """Succeed the job as the pipeline does: a stored result, then lifecycle.move."""
    width, height = job.predicted_width, job.predicted_height
    data = image_bytes(width, height)
    name = default_storage.save(f"outputs/test/{job.pk}.png", ContentFile(data))
    assert lifecycle.move(
        job.pk,
        [Job.State.QUEUED],
        Job.State.SUCCEEDED,
        "Stored the result.",
        output_file=name,
        output_format="PNG",
        output_width=width,
        output_height=height,
        output_bytes=len(data),
    )
    job.refresh_from_db()
    return job


@pytest.fixture
def original(real_pixazo, owner, team) -> Job:
    return finish(submit(owner, team))


# --- the match -------------------------------------------------------------------------------
def test_the_stored_input_records_the_sha256_of_its_bytes(real_pixazo, owner, team):
    job = submit(owner, team)
    assert job.input_sha256 == SHA
    assert job.input_file.read() == PHOTO


def test_the_same_image_provider_and_options_reuse_the_result_for_free(original, teammate, team):
    job = submit(teammate, team)

    assert job.reused_from == original
    assert job.state == Job.State.SUCCEEDED
    assert job.output_file.name == original.output_file.name  # the same file, not a copy
    assert (job.output_width, job.output_height) == (original.output_width, original.output_height)
    assert not LedgerEntry.objects.filter(job=job).exists()  # no hold, no charge
    assert LedgerEntry.objects.filter(job=original, kind="charge").exists()
    assert job.quoted_amount == Decimal("0.07")  # what it would have cost: "saved"
    assert job.quote_explanation.startswith("Reused: not charged.")
    assert job.enqueued_at is None  # never sent to the provider
    timeline = " ".join(job.events.values_list("detail", flat=True))
    assert f"Reused the result of job #{original.pk}" in timeline
    assert "by alice" in timeline and "nothing charged" in timeline


def test_other_options_are_not_reused(original, owner, team):
    job = submit(owner, team, scale=4)
    assert job.reused_from is None
    assert job.state == Job.State.QUEUED
    assert LedgerEntry.objects.filter(job=job, kind="hold").exists()


def test_another_image_is_not_reused(original, owner, team):
    job = submit(owner, team, data=image_bytes(96, 81))
    assert job.reused_from is None


def test_another_teams_result_is_not_reused(original, outsider, other_team):
    job = submit(outsider, other_team)
    assert job.reused_from is None
    assert job.state == Job.State.QUEUED


def test_a_sandbox_result_never_stands_in_for_a_real_one(original, settings, owner, team):
    settings.PROVIDER_SETTINGS = {**settings.PROVIDER_SETTINGS, "pixazo": {"api_key": ""}}
    sandboxed = submit(owner, team)
    assert sandboxed.sandbox and sandboxed.reused_from is None

    finish(sandboxed)
    settings.PROVIDER_SETTINGS = {**settings.PROVIDER_SETTINGS, "pixazo": {"api_key": "k"}}
    Job.objects.filter(pk=original.pk).update(files_expired_at=timezone.now(), output_file="")
    real = submit(owner, team)
    assert not real.sandbox and real.reused_from is None  # the sandbox result is not taken


@pytest.mark.parametrize("gone", ["expired", "deleted", "past_retention"])
def test_an_original_whose_result_is_gone_is_not_reused(original, settings, owner, team, gone):
    if gone == "deleted":
        deletion.delete_files(original, by=owner)
    elif gone == "expired":
        Job.objects.filter(pk=original.pk).update(files_expired_at=timezone.now(), output_file="")
    else:  # the purge has not run yet, but may be deleting it now
        settings.RETENTION_DAYS = 30
        old = timezone.now() - datetime.timedelta(days=31)
        Job.objects.filter(pk=original.pk).update(finished_at=old)
    job = submit(owner, team)
    assert job.reused_from is None
    assert job.state == Job.State.QUEUED


def test_reuse_false_runs_again_as_a_real_new_job(original, owner, team):
    job = submit(owner, team, reuse=False)
    assert job.reused_from is None
    assert job.state == Job.State.QUEUED
    assert LedgerEntry.objects.get(job=job, kind="hold").amount == Decimal("0.07")


def test_a_line_ticked_run_again_is_a_real_new_job(original, owner, team):
    job = submit(owner, team, fresh=[reuse.line_key("pixazo", SHA)])
    assert job.reused_from is None
    assert job.state == Job.State.QUEUED


def test_a_reused_submission_passes_the_budget_it_would_exceed_at_full_price(original, owner, team):
    team.monthly_budget = Decimal("0.08")  # the original's $0.07 is spent
    team.save()
    job = submit(owner, team)
    assert job.reused_from == original
    with pytest.raises(intake.SubmissionRefused, match="monthly budget"):
        submit(owner, team, reuse=False)


def test_parse_sizes_reads_the_hash_and_the_older_entries():
    parsed = intake.parse_sizes(
        [f"a|b.png|96|80|999|PNG|{SHA}", "old.png|96|80|999|PNG", "older.png|96|80|10"]
    )
    assert [(name, info.sha256) for name, info in parsed] == [
        ("a|b.png", SHA),
        ("old.png", ""),
        ("older.png", ""),
    ]
    assert parsed[0][1].width == 96 and parsed[0][1].format == "PNG"


# --- the quote -------------------------------------------------------------------------------
def preview(client, *extra):
    query = "&".join([f"size=photo.png|96|80|{len(PHOTO)}|PNG|{SHA}", "provider=pixazo", *extra])
    response = client.get(f"/upload/preview/?{query}")
    assert response.status_code == 200
    return response


def test_the_preview_says_already_done_and_counts_the_line_free(original, owner_client):
    response = preview(owner_client)
    html = response.content.decode()
    day = timezone.localtime(original.finished_at)
    assert f"Already done on {day.day} {day:%b} by alice" in html
    assert "reuse it for free, or" in html and "run again for $0.07" in html
    assert f'name="fresh" value="pixazo:{SHA}"' in html
    line = response.context["preview"].lines[0]
    assert line.reuse.job_id == original.pk and line.reuse.by == "alice"
    assert response.context["preview"].total == 0

    ticked = preview(owner_client, f"fresh=pixazo:{SHA}")
    assert ticked.context["preview"].total == Decimal("0.07")
    box = ticked.content.decode().split('name="fresh"')[1].split(">")[0]
    assert "checked" in box


def test_the_preview_offers_no_reuse_for_other_options_or_without_a_hash(original, owner_client):
    assert "Already done" not in preview(owner_client, "pixazo-scale=4").content.decode()
    bare = owner_client.get(
        f"/upload/preview/?size=photo.png|96|80|{len(PHOTO)}|PNG&provider=pixazo"
    )
    assert "Already done" not in bare.content.decode()


def test_the_upload_page_reuses_by_default_and_runs_again_when_ticked(original, owner_client, team):
    def post(**extra):
        data = {"images": upload("photo.png", data=PHOTO), "provider": "pixazo", "team": team.pk}
        return owner_client.post("/", {**data, **extra})

    assert post().status_code == 302
    reused = Job.objects.latest("pk")
    assert reused.reused_from == original
    assert post(fresh=f"pixazo:{SHA}").status_code == 302
    assert Job.objects.latest("pk").reused_from is None


def test_the_history_row_and_the_job_page_show_the_reused_badge(
    original, owner_client, owner, team
):
    job = submit(owner, team)
    history = owner_client.get("/jobs/").content.decode()
    row = history.split(f'id="job-{job.pk}"')[1].split("</tr>")[0]
    assert "badge reused" in row and f"/jobs/{original.pk}/" in row
    assert "free — reused" in row

    page = owner_client.get(f"/jobs/{job.pk}/").content.decode()
    assert f"reused from #{original.pk}" in page
    assert "free — reused" in page


# --- spend -----------------------------------------------------------------------------------
def test_the_spend_page_shows_what_reuse_saved(original, owner_client, owner, teammate, team):
    submit(owner, team)
    submit(teammate, team)
    response = owner_client.get("/spend/")
    saved = response.context["saved"]
    assert (saved.amount, saved.count) == (Decimal("0.14"), 2)
    html = response.content.decode()
    assert "Saved by reuse" in html
    assert 'id="saved-total">$0.14' in html
    assert "2 jobs · Studio" in html


def test_saved_by_reuse_is_split_by_month_on_the_page_and_in_the_api(
    original, owner_client, owner, team
):
    earlier = submit(owner, team)
    Job.objects.filter(pk=earlier.pk).update(
        created_at=earlier.created_at - datetime.timedelta(days=40)
    )
    submit(owner, team)
    submit(owner, team)
    now = timezone.now().astimezone(datetime.UTC)
    before = (now - datetime.timedelta(days=40)).strftime("%Y-%m")
    since = (now - datetime.timedelta(days=45)).date().isoformat()

    page = owner_client.get(f"/spend/?since={since}")
    saved = page.context["saved"]
    assert (saved.amount, saved.count) == (Decimal("0.21"), 3)
    assert [(m["month"].strftime("%Y-%m"), m["amount"], m["count"]) for m in saved.months] == [
        (before, Decimal("0.07"), 1),
        (now.strftime("%Y-%m"), Decimal("0.14"), 2),
    ]
    html = page.content.decode()
    assert f'id="saved-{team.pk}-{before}"' in html and "By month" in html
    # This month alone: one month, no breakdown.
    assert "By month" not in owner_client.get("/spend/").content.decode()

    _, token = tokens.create(owner, "ci")
    answer = owner_client.get(
        f"/api/v1/spend?since={since}", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 200
    months = answer.json()["saved_by_reuse"]
    assert [(m["month"], Decimal(m["amount"]), m["count"]) for m in months] == [
        (before, Decimal("0.07"), 1),
        (now.strftime("%Y-%m"), Decimal("0.14"), 2),
    ]
    assert {m["team"] for m in months} == {team.pk}


def test_the_spend_page_leaves_out_other_teams_savings(original, outsider, other_team, client):
    other = Team.objects.get(pk=other_team.pk)
    client.force_login(outsider)
    response = client.get("/spend/")
    assert response.context["saved"].count == 0
    assert other.pk


def test_the_csv_lists_reused_jobs_with_what_they_saved(original, owner_client, owner, team):
    job = submit(owner, team)
    body = b"".join(owner_client.get("/spend/export.csv").streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(body)))
    by_job = {row["job"]: row for row in rows}
    assert by_job[str(original.pk)]["kind"] == "charge"
    assert by_job[str(original.pk)]["saved_usd"] == ""
    reused_row = by_job[str(job.pk)]
    assert reused_row["kind"] == "reused"
    assert reused_row["amount_usd"] == "0.0000"
    assert reused_row["saved_usd"] == "0.0700"
    assert reused_row["reused_from"] == str(original.pk)
    assert [row["job"] for row in rows] == [str(original.pk), str(job.pk)]  # by date


# --- the shared result file ------------------------------------------------------------------
def test_deleting_the_originals_files_keeps_the_result_the_reused_job_uses(
    original, owner, team, django_capture_on_commit_callbacks
):
    job = submit(owner, team)
    name = original.output_file.name
    with django_capture_on_commit_callbacks(execute=True):
        deletion.delete_files(original, by=owner)
    assert default_storage.exists(name)
    job.refresh_from_db()
    assert job.output_file.read()  # still downloadable

    with django_capture_on_commit_callbacks(execute=True):
        deletion.delete_files(job, by=owner)
    assert not default_storage.exists(name)  # the last user gone: the file goes


def test_deleting_the_reused_jobs_files_keeps_the_originals_result(
    original, owner, team, django_capture_on_commit_callbacks
):
    job = submit(owner, team)
    upload_name = job.input_file.name
    with django_capture_on_commit_callbacks(execute=True):
        deletion.delete_files(job, by=owner)
    assert default_storage.exists(original.output_file.name)
    assert not default_storage.exists(upload_name)  # its own upload went


def test_the_purge_keeps_a_result_a_reused_job_still_uses(original, settings, owner, team):
    settings.RETENTION_DAYS = 30
    job = submit(owner, team)
    name = original.output_file.name
    long_ago = timezone.now() - datetime.timedelta(days=40)
    Job.objects.filter(pk=original.pk).update(finished_at=long_ago)

    retention.purge()
    original.refresh_from_db()
    assert original.files_expired_at is not None
    assert default_storage.exists(name)  # the reused job keeps it

    Job.objects.filter(pk=job.pk).update(finished_at=long_ago)
    retention.purge()
    assert not default_storage.exists(name)


def test_stored_bytes_count_a_reused_result_once(original, owner, team):
    before = retention.stored_bytes([team.pk])[team.pk]
    job = submit(owner, team)
    after = retention.stored_bytes([team.pk])[team.pk]
    assert after - before == job.input_bytes  # its own upload; the result is the original's


def test_the_providers_page_leaves_reused_jobs_out_of_the_providers_figures(original, owner, team):
    from jobs import stats

    submit(owner, team)
    (row,) = [r for r in stats.provider_stats(Job.objects.all()) if r["provider"].slug == "pixazo"]
    assert row["ended"] == 1  # the original only: the reuse took no provider time


# --- jobs from before content hashes ----------------------------------------------------------
def made_before_hashes(*jobs: Job) -> None:
    Job.objects.filter(pk__in=[j.pk for j in jobs]).update(input_sha256="")


def test_an_old_job_gets_its_hash_and_its_result_is_reused(original, teammate, team):
    made_before_hashes(original)
    assert submit(teammate, team, reuse=True).reused_from is None  # not found without a hash

    assert reuse.hash_old_inputs() == (1, False)
    original.refresh_from_db()
    assert original.input_sha256 == SHA  # the hash of the stored original's bytes
    assert submit(teammate, team).reused_from == original


def test_a_shared_original_is_read_once_for_all_its_jobs(real_pixazo, owner, team):
    jobs = intake.submit_uploads(
        user=owner,
        team=team,
        files=[upload("photo.png", data=PHOTO)],
        choices=[("pixazo", {"scale": 2}), ("pixazo", {"scale": 4})],
    )
    for job in jobs:
        finish(job)
    done = Job.objects.filter(pk__in=[j.pk for j in jobs], state=Job.State.SUCCEEDED)
    assert done.count() == 2 and len({j.input_file.name for j in done}) == 1
    made_before_hashes(*done)

    assert reuse.hash_old_inputs() == (1, False)  # one file, two jobs
    assert set(done.values_list("input_sha256", flat=True)) == {SHA}


def test_a_missing_original_is_marked_once_and_never_matched(original, teammate, team, caplog):
    made_before_hashes(original)
    default_storage.delete(original.input_file.name)

    assert reuse.hash_old_inputs() == (0, False)
    original.refresh_from_db()
    assert original.input_sha256 == reuse.NO_FILE
    assert "left unmatched" in caplog.text
    assert reuse.hash_old_inputs() == (0, False)  # not tried again
    assert submit(teammate, team).reused_from is None


def test_the_work_goes_in_batches_and_stops_at_its_time_limit(real_pixazo, owner, team):
    olds = [
        finish(submit(owner, team, data=image_bytes(96, 80, unique=True), reuse=False))
        for _ in range(3)
    ]
    made_before_hashes(*olds)
    assert reuse.hash_old_inputs(batch=2, time_limit=0) == (2, True)  # one batch, then stop
    assert reuse.hash_old_inputs(batch=2) == (1, False)
    for job in olds:
        job.refresh_from_db()
        assert job.input_sha256 == hashlib.sha256(job.input_file.read()).hexdigest()


def test_the_daily_task_and_the_command_hash_old_inputs(original, settings):
    made_before_hashes(original)
    assert tasks.purge_expired()["inputs_hashed"] == 1
    made_before_hashes(original)
    out = io.StringIO()
    call_command("hash_inputs", stdout=out)
    assert out.getvalue().endswith("Done: 1 originals hashed.\n")
    original.refresh_from_db()
    assert original.input_sha256 == SHA
