"""The upload page: what it accepts, what it refuses (in plain words), and that a
refusal stores nothing."""

import pytest
from django.core.files.storage import default_storage

from jobs.models import Job
from tests.images import image_bytes, png_bomb, upload


def stored_files(settings):
    root = settings.MEDIA_ROOT
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def post(client, *files, provider="local", scale="2", htmx=False, **extra):
    data = {"provider": provider, f"{provider}-scale": scale, "images": list(files), **extra}
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    return client.post("/", data, **headers)


def test_it_shows_the_upload_page(owner_client):
    response = owner_client.get("/")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'type="file" name="images"' in page and "multiple" in page
    assert 'value="local"' in page and 'name="local-scale"' in page


def test_it_sends_anonymous_users_to_sign_in(client, db):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_each_image_becomes_a_job(owner_client, owner, team, inline_tasks):
    with inline_tasks():
        response = post(
            owner_client,
            upload("a.png"),
            upload("b.jpg", fmt="JPEG", content_type="image/jpeg"),
            upload("c.webp", fmt="WEBP"),
            scale="3",
        )
    jobs = Job.objects.order_by("pk")
    assert response.status_code == 302
    assert len(jobs) == 3
    assert len({job.batch for job in jobs}) == 1
    assert response["Location"] == f"/jobs/?batch={jobs[0].batch}"
    for job, fmt in zip(jobs, ["PNG", "JPEG", "WEBP"], strict=True):
        assert job.team == team and job.created_by == owner
        assert job.state == Job.State.SUCCEEDED, job.error_message
        assert (job.output_width, job.output_height) == (96 * 3, 80 * 3)
        assert job.output_format == fmt
        assert [e.state for e in job.events.all()] == [
            "queued",
            "submitting",
            "fetching",
            "succeeded",
        ]


def test_stored_files_get_server_made_names(owner_client, inline_tasks):
    with inline_tasks():
        post(owner_client, upload("../../etc/passwd.png"))
    job = Job.objects.get()
    assert job.input_name == "passwd.png"
    assert "passwd" not in job.input_file.name
    assert job.input_file.name.startswith("inputs/") and job.input_file.name.endswith(".png")
    assert default_storage.exists(job.input_file.name)


def test_the_htmx_answer_is_the_outcome_fragment(owner_client, inline_tasks):
    with inline_tasks():
        response = post(owner_client, upload("a.png"), upload("b.png"), htmx=True)
    assert response.status_code == 201
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="outcome"')
    assert "2 jobs queued" in html
    assert html.count('class="job-row') == 2


BAD_UPLOADS = [
    ("notes.png", b"just some text, not pixels", "not an image we can read"),
    ("cut.png", image_bytes(200, 200)[:300], "truncated or damaged"),
    ("anim.gif", image_bytes(100, 100, fmt="GIF"), "GIF images are not supported"),
    ("scan.tiff", image_bytes(100, 100, fmt="TIFF"), "TIFF images are not supported"),
    (
        "logo.svg",
        b'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"/>',
        "not an image we can read",
    ),
    ("art.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n", "not supported"),
    ("tiny.png", image_bytes(40, 100), "at least 64x64"),
    ("bomb.png", png_bomb(), "decompression bomb"),
    ("empty.png", b"", "empty"),
]


@pytest.mark.parametrize("name,data,message", BAD_UPLOADS, ids=[b[0] for b in BAD_UPLOADS])
def test_it_refuses_bad_files_in_plain_words(owner_client, settings, name, data, message):
    response = post(owner_client, upload(name, data), htmx=True)
    assert response.status_code == 422
    html = response.content.decode()
    assert "Nothing was uploaded" in html
    assert name in html and message in html
    assert Job.objects.count() == 0
    assert stored_files(settings) == []


def test_it_refuses_a_30_mb_upload(owner_client, settings):
    data = image_bytes(100, 100) + b"\0" * (30 * 1024 * 1024)
    response = post(owner_client, upload("huge.png", data), htmx=True)
    assert response.status_code == 422
    assert "huge.png: The file is 30.0 MB; the limit is 25.0 MB." in response.content.decode()
    assert stored_files(settings) == []


def test_one_bad_file_refuses_the_submission_and_names_it(owner_client, settings):
    response = post(owner_client, upload("good.png"), upload("bad.png", b"nope"), htmx=True)
    html = response.content.decode()
    assert response.status_code == 422
    assert "bad.png" in html and "good.png" not in html
    assert Job.objects.count() == 0 and stored_files(settings) == []


def test_without_htmx_a_refusal_rerenders_the_page(owner_client):
    response = post(owner_client, upload("bad.png", b"nope"))
    assert response.status_code == 422
    html = response.content.decode()
    assert "<html" in html and "bad.png" in html
    assert 'value="local" checked' in html


def test_it_refuses_a_scale_the_provider_does_not_offer(owner_client, settings):
    response = post(owner_client, upload("a.png"), scale="5", htmx=True)
    assert response.status_code == 422
    assert "Scale &#x27;5&#x27; is not offered. Allowed: 2, 3, 4." in response.content.decode()
    assert stored_files(settings) == []


def test_it_refuses_an_output_over_the_local_cap(owner_client, settings):
    settings.LOCAL_MAX_OUTPUT_PIXELS = 100_000
    response = post(owner_client, upload("a.png", width=200, height=200), scale="4", htmx=True)
    html = response.content.decode()
    assert response.status_code == 422
    assert "800x800 (0.6 MP), over the local upscaler&#x27;s limit of 0.1 MP" in html
    assert Job.objects.count() == 0


def test_it_needs_a_provider_and_a_file(owner_client):
    response = owner_client.post("/", {"images": []}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert "Pick at least one provider." in html
    response = post(owner_client, htmx=True)
    assert "Choose at least one image." in response.content.decode()


def test_it_refuses_a_foreign_team(owner_client, other_team):
    response = post(owner_client, upload(), team=str(other_team.pk), htmx=True)
    assert response.status_code == 422
    assert "Pick one of your teams." in response.content.decode()
    assert Job.objects.count() == 0


def test_it_refuses_an_unknown_provider(owner_client):
    response = owner_client.post(
        "/", {"provider": "magic", "images": [upload()]}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 422
    assert "There is no provider called &#x27;magic&#x27;." in response.content.decode()
