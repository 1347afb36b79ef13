"""Results as one ZIP (jobs/zips.py), streamed: from a batch and from a History
selection, named by provider and size."""

import io
import zipfile

import pytest
from django.core.files.storage import default_storage
from django.http import StreamingHttpResponse

from jobs import intake, zips
from jobs.models import Job
from tests.images import upload
from tests.test_s3_storage import bucket  # noqa: F401 - the S3 test's fixture


@pytest.fixture
def batch(owner, team, inline_tasks):
    """A submission of three images, each upscaled twice by the local provider (a rerun
    put in the same batch: the local provider is one choice per submission)."""
    with inline_tasks():
        jobs = intake.submit_uploads(
            user=owner,
            team=team,
            files=[
                upload("beach.png", width=80, height=64),
                upload("cat.png", width=100, height=64),
                upload("dog.jpg", content_type="image/jpeg", width=64, height=64, fmt="JPEG"),
            ],
            choices=[("local", {"scale": 2})],
        )
        again = intake.rerun(jobs[0], user=owner, choices=[("local", {"scale": 3})])
    Job.objects.filter(pk__in=[j.pk for j in again]).update(batch=jobs[0].batch)
    jobs = list(Job.objects.filter(batch=jobs[0].batch).order_by("pk"))
    assert [j.state for j in jobs] == [Job.State.SUCCEEDED] * 4
    return jobs


def unzip(response) -> dict[str, bytes]:
    body = b"".join(response.streaming_content)
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.testzip() is None
        return {name: archive.read(name) for name in archive.namelist()}


def stored(job) -> bytes:
    with default_storage.open(job.output_file.name, "rb") as f:
        return f.read()


def test_a_batch_zip_holds_every_result_named_by_provider_and_size(owner_client, batch):
    response = owner_client.get(f"/jobs/batch/{batch[0].batch}/zip/")
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert "attachment" in response["Content-Disposition"]
    files = unzip(response)
    assert list(files) == [
        "beach-local-160x128.png",
        "cat-local-200x128.png",
        "dog-local-128x128.jpg",
        "beach-local-240x192.png",
    ]
    for job, (name, data) in zip(batch, files.items(), strict=True):
        assert name == zips.result_name(job) and data == stored(job)


def test_the_download_uses_the_same_name(owner_client, batch):
    response = owner_client.get(f"/jobs/{batch[0].pk}/download/")
    assert 'filename="beach-local-160x128.png"' in response["Content-Disposition"]


def test_equal_names_are_made_unique(owner, team, make_job):
    one = make_job(owner, team, name="same.png")
    two = make_job(owner, team, name="same.png")
    assert zips.entry_names([one, two]) == ["same-local-192x160.png", "same-local-192x160-2.png"]


def test_it_streams_chunk_by_chunk_never_the_whole_zip_at_once(owner_client, batch, monkeypatch):
    monkeypatch.setattr(zips, "CHUNK", 128)  # results of 400+ bytes: several chunks each
    response = owner_client.get(f"/jobs/batch/{batch[0].batch}/zip/")
    assert isinstance(response, StreamingHttpResponse)
    chunks = iter(response.streaming_content)
    first = next(chunks)
    # The first result has begun before the generator has read the others.
    assert first.startswith(b"PK\x03\x04") and b"cat-local" not in first
    rest = list(chunks)
    sizes = [len(first), *map(len, rest)]
    total = sum(sizes)
    assert len(sizes) > len(batch) and max(sizes) < total / 2
    assert len(sizes) > sum(job.output_bytes for job in batch) / 128
    # A chunk of a result and a header, no more (the last: the central directory).
    assert max(sizes[:-1]) <= 128 + 200


def test_a_selection_zip_holds_the_ticked_jobs_of_my_teams_only(
    owner_client, batch, make_job, outsider, other_team
):
    theirs = make_job(outsider, other_team, name="secret.png")
    ids = [batch[1].pk, batch[2].pk, theirs.pk]
    response = owner_client.get("/jobs/zip/", {"job": ids})
    files = unzip(response)
    assert list(files) == ["cat-local-200x128.png", "dog-local-128x128.jpg"]


def test_only_other_teams_jobs_is_a_plain_404(owner_client, make_job, outsider, other_team):
    theirs = make_job(outsider, other_team)
    response = owner_client.get("/jobs/zip/", {"job": [theirs.pk]})
    assert response.status_code == 404
    assert response.content.decode() == "None of these jobs exists in your teams."


def test_another_teams_batch_is_404(client, outsider, batch):
    client.force_login(outsider)
    assert client.get(f"/jobs/batch/{batch[0].batch}/zip/").status_code == 404


def test_failed_and_deleted_jobs_are_left_out_and_the_page_says_so(
    owner_client, owner, batch, django_capture_on_commit_callbacks
):
    from jobs import deletion

    Job.objects.filter(pk=batch[1].pk).update(state=Job.State.FAILED)
    with django_capture_on_commit_callbacks(execute=True):
        deletion.delete_files(batch[2], by=owner)
    response = owner_client.get(f"/jobs/batch/{batch[0].batch}/zip/")
    assert list(unzip(response)) == ["beach-local-160x128.png", "beach-local-240x192.png"]

    compare = owner_client.get(f"/jobs/batch/{batch[0].batch}/compare/").content.decode()
    assert "Download 2 results as ZIP" in compare
    assert "2 jobs without a result" in compare and "are left out" in compare
    history = owner_client.get("/jobs/", {"batch": str(batch[0].batch)}).content.decode()
    assert f'href="/jobs/batch/{batch[0].batch}/zip/"' in history
    assert "Download 2 results as ZIP" in history


def test_nothing_to_zip_is_a_plain_404(owner_client, batch):
    Job.objects.filter(batch=batch[0].batch).update(state=Job.State.FAILED)
    response = owner_client.get(f"/jobs/batch/{batch[0].batch}/zip/")
    assert response.status_code == 404
    assert "None of these jobs has a result to download" in response.content.decode()
    compare = owner_client.get(f"/jobs/batch/{batch[0].batch}/compare/").content.decode()
    assert "/zip/" not in compare


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ({"job": [str(n) for n in range(1, 502)]}, "That is 501 jobs: a ZIP holds at most 500."),
        ({}, "Tick the jobs whose results you want"),
        ({"job": ["1", "two"]}, "Those are not job numbers."),
    ],
)
def test_a_bad_selection_gets_a_plain_message(owner_client, query, words):
    response = owner_client.get("/jobs/zip/", query)
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain")
    assert words in response.content.decode()


def test_it_needs_a_login_and_a_get(client, owner_client, batch):
    assert owner_client.post("/jobs/zip/", {"job": [batch[0].pk]}).status_code == 405
    client.logout()
    assert client.get(f"/jobs/batch/{batch[0].batch}/zip/").status_code == 302


def test_history_rows_have_a_checkbox_kept_through_the_live_swap(owner_client, batch):
    html = owner_client.get("/jobs/").content.decode()
    assert 'id="zip-selection"' in html and "Download selected as ZIP" in html
    row = owner_client.get(f"/jobs/{batch[0].pk}/row/").content.decode()
    box = f'<input type="checkbox" name="job" value="{batch[0].pk}" id="pick-{batch[0].pk}"'
    assert box in row and 'form="zip-selection" hx-preserve' in row


def test_it_zips_from_the_bucket_too(bucket, owner_client, batch):  # noqa: F811
    # `bucket` comes first: the batch's files were stored in it.
    assert {job.output_file.name for job in batch} <= set(bucket.stored())
    files = unzip(owner_client.get(f"/jobs/batch/{batch[0].batch}/zip/"))
    assert len(files) == 4
    assert files["cat-local-200x128.png"] == bucket.read(batch[1].output_file.name)


def test_a_result_missing_from_the_storage_is_passed_over(owner_client, batch):
    default_storage.delete(batch[1].output_file.name)
    files = unzip(owner_client.get(f"/jobs/batch/{batch[0].batch}/zip/"))
    assert "cat-local-200x128.png" not in files and len(files) == 3
