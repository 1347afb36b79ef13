"""Job pages per persona: the owner and a teammate see a team's jobs; an outsider gets
404 for every page, fragment and file of them."""

import io

import pytest
from PIL import Image

from jobs.models import Job


@pytest.fixture
def job(make_job, owner, team):
    return make_job(owner, team, name="harbour.png", scale=2)


JOB_PAGES = [
    "/jobs/{pk}/",
    "/jobs/{pk}/row/",
    "/jobs/{pk}/download/",
    "/jobs/{pk}/input/image/",
    "/jobs/{pk}/input/thumb/",
    "/jobs/{pk}/output/image/",
    "/jobs/{pk}/output/thumb/",
]


@pytest.mark.parametrize("url", JOB_PAGES)
def test_the_owner_and_a_teammate_open_every_job_page(client, job, owner, teammate, url):
    for user in (owner, teammate):
        client.force_login(user)
        assert client.get(url.format(pk=job.pk)).status_code == 200


@pytest.mark.parametrize("url", [*JOB_PAGES, "/jobs/{pk}/cancel/", "/jobs/{pk}/rerun/"])
def test_it_refuses_a_foreign_job(client, job, outsider, url):
    client.force_login(outsider)
    method = client.post if url.endswith(("cancel/", "rerun/")) else client.get
    assert method(url.format(pk=job.pk)).status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "/jobs/999999/",
        "/jobs/999999/row/",
        "/jobs/999999/download/",
        "/jobs/1/other/image/",
        "/jobs/1/input/raw/",
    ],
)
def test_it_answers_404_for_a_bad_id(owner_client, url):
    assert owner_client.get(url).status_code == 404


@pytest.mark.parametrize(
    "url,method",
    [
        ("/jobs/{pk}/cancel/", "get"),
        ("/jobs/{pk}/rerun/", "get"),
        ("/jobs/{pk}/", "post"),
        ("/jobs/", "post"),
    ],
)
def test_it_refuses_the_wrong_method(owner_client, job, url, method):
    assert getattr(owner_client, method)(url.format(pk=job.pk)).status_code == 405


def test_pages_need_a_signed_in_user(client, job):
    for url in JOB_PAGES:
        response = client.get(url.format(pk=job.pk))
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_job_page_shows_the_comparison_and_the_timeline(owner_client, job):
    html = owner_client.get(f"/jobs/{job.pk}/").content.decode()
    assert 'handle="true" data-max-width="480">' in html  # the slider moves by its handle
    assert f"/jobs/{job.pk}/input/image/" in html and f"/jobs/{job.pk}/output/image/" in html
    assert "Download result" in html
    assert "96×80 PNG" in html and "192×160 PNG" in html
    for state in ("Queued", "Submitting", "Fetching result", "Succeeded"):
        assert state in html
    assert "hx-trigger" not in html.split('id="live"')[1].split(">")[0]  # finished: no polling


def test_an_unfinished_job_polls_and_can_be_canceled(owner_client, make_job, owner, team):
    job = make_job(owner, team, run=False)
    html = owner_client.get(f"/jobs/{job.pk}/").content.decode()
    live = html.split('id="live"')[1].split(">")[0]
    assert 'hx-trigger="every 2s"' in live  # portal.js skips polls while the tab is hidden
    assert "Cancel job" in html
    row = owner_client.get(f"/jobs/{job.pk}/row/").content.decode()
    assert f'hx-get="/jobs/{job.pk}/row/"' in row


def test_a_finished_row_does_not_poll(owner_client, job):
    row = owner_client.get(f"/jobs/{job.pk}/row/").content.decode()
    assert "hx-get" not in row and "state-succeeded" in row


def test_the_live_fragment_is_served_to_htmx(owner_client, job):
    response = owner_client.get(f"/jobs/{job.pk}/", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="live")
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="live"') and "<html" not in html


def test_download_is_an_attachment_with_the_real_type(owner_client, job):
    response = owner_client.get(f"/jobs/{job.pk}/download/")
    assert response["Content-Type"] == "image/png"
    assert response["Content-Disposition"] == ('attachment; filename="harbour-local-192x160.png"')
    img = Image.open(io.BytesIO(b"".join(response.streaming_content)))
    assert img.size == (192, 160)


def test_an_unfinished_job_has_nothing_to_download(owner_client, make_job, owner, team):
    job = make_job(owner, team, run=False)
    assert owner_client.get(f"/jobs/{job.pk}/download/").status_code == 404
    assert owner_client.get(f"/jobs/{job.pk}/output/image/").status_code == 404


def test_cancel_stops_an_unfinished_job(owner_client, make_job, owner, team):
    job = make_job(owner, team, run=False)
    response = owner_client.post(f"/jobs/{job.pk}/cancel/")
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.state == Job.State.CANCELED and job.finished_at
    assert job.events.last().detail == "Canceled by alice."


def test_cancel_leaves_a_finished_job_alone(owner_client, job):
    owner_client.post(f"/jobs/{job.pk}/cancel/")
    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED


def test_a_teammate_runs_a_job_again_with_other_options(client, job, teammate, inline_tasks):
    client.force_login(teammate)
    with inline_tasks():
        response = client.post(f"/jobs/{job.pk}/rerun/", {"provider": "local", "local-scale": "4"})
    rerun = Job.objects.exclude(pk=job.pk).get()
    assert response.status_code == 302 and response["Location"] == f"/jobs/{rerun.pk}/"
    assert rerun.source_job == job and rerun.created_by == teammate and rerun.team == job.team
    assert rerun.input_file.name == job.input_file.name
    assert rerun.state == Job.State.SUCCEEDED and rerun.output_width == 96 * 4


def test_run_again_refuses_bad_options_on_the_page(owner_client, job):
    data = {"provider": "local", "local-scale": "9"}
    response = owner_client.post(f"/jobs/{job.pk}/rerun/", data)
    assert response.status_code == 422
    assert "Allowed: 2, 3, 4." in response.content.decode()
    assert Job.objects.count() == 1
