"""A person deletes a job's files (jobs/deletion.py): its creator, or a manager of its
team. The row, timeline and ledger rows stay; every page says who deleted them and when."""

import pytest
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.html import strip_tags

from billing.models import LedgerEntry
from jobs import deletion, intake, pipeline, retention
from jobs.models import Job, JobEvent
from tests.test_s3_storage import bucket  # noqa: F401 - the S3 test's fixture

FILES = ("input_file", "input_thumb", "output_file", "output_thumb")


def names(job) -> list[str]:
    return [getattr(job, field).name for field in FILES if getattr(job, field).name]


def stored(name_list) -> list[bool]:
    return [default_storage.exists(name) for name in name_list]


@pytest.fixture
def done(make_job):
    """done(user, team) -> a succeeded job with its four files stored."""

    def make(user, team, **kwargs):
        job = make_job(user, team, **kwargs)
        assert job.state == Job.State.SUCCEEDED
        pipeline.output_thumb(job)  # as when someone first looked at the result
        job.refresh_from_db()
        assert len(names(job)) == 4 and all(stored(names(job)))
        return job

    return make


@pytest.fixture
def post_delete(client, django_capture_on_commit_callbacks):
    """post_delete(user, job) -> the response; the files go when the commit runs."""

    def post(user, job, **headers):
        client.force_login(user)
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(f"/jobs/{job.pk}/delete/", headers=headers)

    return post


def deleted_sentence(user) -> str:
    return f"Files deleted by {user.get_username()} on {timezone.now():%Y-%m-%d}."


def test_a_member_deletes_their_own_jobs_files(done, teammate, team, post_delete):
    job = done(teammate, team)
    files = names(job)
    response = post_delete(teammate, job)
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    job.refresh_from_db()
    assert job.deleted_by == teammate and job.deleted_at is not None
    assert names(job) == [] and stored(files) == [False] * 4
    assert job.state == Job.State.SUCCEEDED  # the row and its story stay
    event = job.events.last()
    assert event.detail.startswith("Files deleted by bob")


def test_a_member_cannot_delete_a_teammates_job(done, owner, teammate, team, post_delete):
    job = done(owner, team)
    files = names(job)
    response = post_delete(teammate, job)
    assert response.status_code == 403
    assert "Only alice or a manager of the team can delete" in response.content.decode()
    job.refresh_from_db()
    assert job.deleted_at is None and names(job) == files and all(stored(files))


def test_a_manager_deletes_any_job_of_the_team(done, owner, teammate, team, post_delete):
    job = done(teammate, team)
    assert post_delete(owner, job).status_code == 302
    job.refresh_from_db()
    assert job.deleted_by == owner and names(job) == []


def test_the_job_page_offers_delete_only_to_who_may(done, client, owner, teammate, team):
    job = done(owner, team)
    client.force_login(teammate)
    assert f"/jobs/{job.pk}/delete/" not in client.get(f"/jobs/{job.pk}/").content.decode()
    client.force_login(owner)
    assert f'href="/jobs/{job.pk}/delete/"' in client.get(f"/jobs/{job.pk}/").content.decode()


def test_the_confirmation_step_is_a_page_and_an_htmx_fragment(done, client, owner, team):
    job = done(owner, team)
    client.force_login(owner)
    page = client.get(f"/jobs/{job.pk}/delete/")
    html = page.content.decode()
    assert page.status_code == 200 and "<html" in html
    assert f'action="/jobs/{job.pk}/delete/"' in html and "Delete the files of photo.png" in html
    fragment = client.get(f"/jobs/{job.pk}/delete/", headers={"HX-Request": "true"})
    assert "<html" not in fragment.content.decode()
    assert 'id="delete-confirm"' in fragment.content.decode()
    job.refresh_from_db()
    assert job.deleted_at is None  # looking is not deleting


def test_an_outsider_gets_404(done, owner, team, outsider, post_delete, client):
    job = done(owner, team)
    assert post_delete(outsider, job).status_code == 404
    assert client.get(f"/jobs/{job.pk}/delete/").status_code == 404
    job.refresh_from_db()
    assert job.deleted_at is None and all(stored(names(job)))


def test_it_answers_405_to_other_methods_and_404_to_a_bad_id(done, owner, team, client):
    job = done(owner, team)
    client.force_login(owner)
    assert client.put(f"/jobs/{job.pk}/delete/").status_code == 405
    assert client.post("/jobs/999999/delete/").status_code == 404


def test_an_active_job_is_refused_until_canceled(make_job, owner, team, post_delete):
    job = make_job(owner, team, run=False)
    files = names(job)
    response = post_delete(owner, job)
    assert response.status_code == 409
    assert "Cancel it first" in response.content.decode()
    job.refresh_from_db()
    assert job.deleted_at is None and names(job) == files and all(stored(files))


def test_deleting_twice_says_there_is_nothing_left(done, owner, team, post_delete):
    job = done(owner, team)
    post_delete(owner, job)
    response = post_delete(owner, job)
    assert response.status_code == 409
    assert deleted_sentence(owner) in response.content.decode()


def test_an_expired_job_has_nothing_to_delete(done, owner, team, post_delete):
    job = done(owner, team)
    Job.objects.filter(pk=job.pk).update(files_expired_at=timezone.now())
    response = post_delete(owner, job)
    assert response.status_code == 409 and "nothing left to delete" in response.content.decode()


def test_a_shared_input_stays_while_a_sibling_keeps_its_files(
    done, owner, team, post_delete, inline_tasks
):
    first = done(owner, team)
    with inline_tasks():
        (second,) = intake.rerun(first, user=owner, choices=[("local", {"scale": 3})])
    second.refresh_from_db()
    original = [first.input_file.name, first.input_thumb.name]
    assert second.input_file.name == original[0] and not second.input_owner
    before = retention.stored_bytes([team.pk])[team.pk]

    post_delete(owner, first)
    first.refresh_from_db()
    second.refresh_from_db()
    assert names(first) == [] and stored(original) == [True, True]
    assert second.input_owner  # the stayed original is counted on the job that keeps it
    assert retention.stored_bytes([team.pk])[team.pk] == before - first.output_bytes

    post_delete(owner, second)
    assert stored(original) == [False, False]  # deleted with the last job that used it
    assert retention.stored_bytes([team.pk]).get(team.pk, 0) == 0


def test_the_ledger_rows_stay_exactly_as_they_were(done, owner, team, post_delete):
    job = done(owner, team)
    rows = LedgerEntry.objects.filter(job=job)
    before = (rows.count(), rows.aggregate(total=Sum("amount"))["total"])
    assert before[0] >= 1
    post_delete(owner, job)
    assert (rows.count(), rows.aggregate(total=Sum("amount"))["total"]) == before


@pytest.mark.parametrize(
    "url",
    [
        "/jobs/{pk}/download/",
        "/jobs/{pk}/input/image/",
        "/jobs/{pk}/output/image/",
        "/jobs/{pk}/output/thumb/",
    ],
)
def test_its_files_answer_410_with_who_deleted_them(done, owner, team, post_delete, client, url):
    job = done(owner, team)
    post_delete(owner, job)
    response = client.get(url.format(pk=job.pk))
    assert response.status_code == 410
    assert response.content.decode() == deleted_sentence(owner)


def test_the_pages_say_who_deleted_the_files_and_keep_the_cost(
    done, owner, teammate, team, post_delete, client
):
    job = done(teammate, team)
    post_delete(owner, job)
    sentence = deleted_sentence(owner)

    html = client.get(f"/jobs/{job.pk}/").content.decode()
    assert sentence in strip_tags(html) and "as this portal keeps files" not in html
    assert f"/jobs/{job.pk}/download/" not in html and f"/jobs/{job.pk}/output/" not in html
    assert 'id="cost"' in html and f"/jobs/{job.pk}/delete/" not in html

    row = client.get(f"/jobs/{job.pk}/row/").content.decode()
    assert sentence in strip_tags(row) and "/thumb/" not in row
    history = client.get("/jobs/").content.decode()
    assert sentence in strip_tags(history)

    compare = client.get(f"/jobs/batch/{job.batch}/compare/").content.decode()
    assert sentence in strip_tags(compare) and "/thumb/" not in compare


def test_a_deleted_job_stays_beside_its_siblings_on_the_compare_page(
    done, owner, team, post_delete, client, inline_tasks
):
    first = done(owner, team)
    with inline_tasks():
        intake.rerun(first, user=owner, choices=[("local", {"scale": 3})])
    # Two jobs of one batch on the same original: make them siblings of one batch.
    Job.objects.filter(source_job=first).update(batch=first.batch)
    post_delete(owner, first)
    html = client.get(f"/jobs/batch/{first.batch}/compare/").content.decode()
    assert html.count('class="card"') == 1  # one image, one section
    assert deleted_sentence(owner) in strip_tags(html)


def test_a_failure_before_the_commit_changes_nothing(done, owner, team, monkeypatch):
    job = done(owner, team)
    files = names(job)

    def crash(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(JobEvent.objects, "create", crash)
    with pytest.raises(RuntimeError):
        deletion.delete_files(job, by=owner)
    job.refresh_from_db()
    assert job.deleted_at is None and names(job) == files and all(stored(files))


def test_files_are_deleted_only_once_the_change_is_committed(
    done, owner, team, django_capture_on_commit_callbacks
):
    job = done(owner, team)
    files = names(job)
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        deletion.delete_files(job, by=owner)
        raise RuntimeError("the process died before the commit")
    job.refresh_from_db()
    assert job.deleted_at is None and names(job) == files and all(stored(files))


def test_a_file_already_gone_or_undeletable_still_ends_deleted(
    done, owner, team, monkeypatch, django_capture_on_commit_callbacks
):
    job = done(owner, team)
    default_storage.delete(job.output_file.name)  # gone already

    def refuse(name):
        raise OSError("read-only")

    with django_capture_on_commit_callbacks(execute=True):
        monkeypatch.setattr(default_storage, "delete", refuse)
        deletion.delete_files(job, by=owner)
    job.refresh_from_db()
    assert job.deleted_at is not None and names(job) == []


def test_it_deletes_from_the_bucket_too(
    bucket,  # noqa: F811
    done,
    owner,
    team,
    django_capture_on_commit_callbacks,
):
    job = done(owner, team)
    keys = names(job)
    assert set(keys) <= set(bucket.stored())
    with django_capture_on_commit_callbacks(execute=True):
        deletion.delete_files(job, by=owner)
    assert not set(keys) & set(bucket.stored())
