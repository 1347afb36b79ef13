"""The upload preview, the compare page and the providers page."""

import uuid

from jobs import intake
from jobs.models import Job
from tests.images import upload


def preview(client, query):
    return client.get("/upload/preview/?" + query).content.decode()


def test_the_preview_predicts_sizes_and_prices_per_provider(owner_client):
    html = preview(
        owner_client,
        "size=cat.png|1000|800|1234&provider=local&local-scale=2"
        "&provider=pixazo&pixazo-scale=4&provider=apixo&apixo-resolution=2k",
    )
    assert "cat.png" in html
    assert "2000×1600" in html and ">free<" in html  # local: $0.00 reads "free"
    assert "4000×3200" in html and "$0.23" in html  # pixazo: 12.8 MP, the 8-16 MP bracket
    assert "2048×1638" in html and "$0.01" in html  # apixo long edge 2048


def test_the_preview_shows_refusals_before_anything_is_sent(owner_client):
    html = preview(owner_client, "size=big.png|2000|2000|99&provider=pixelcut&pixelcut-scale=4")
    assert "Pixelcut takes at most 1500x1500 pixels at 4x" in html
    html = preview(owner_client, "size=a.png|100|100|9&provider=local&local-scale=9")
    assert "Allowed: 2, 3, 4." in html


def test_the_preview_asks_for_images_first(owner_client):
    assert "Add images" in preview(owner_client, "provider=local")
    assert "Add images" in preview(owner_client, "size=garbage&provider=local")


def test_the_preview_needs_a_signed_in_user(client, db):
    assert client.get("/upload/preview/").status_code == 302


def test_several_providers_make_one_batch_to_compare(owner_client, owner, team):
    response = owner_client.post(
        "/",
        {
            "images": [upload("duo.png")],
            "provider": ["local", "apixo"],
            "local-scale": "3",
            "apixo-resolution": "2k",
        },
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 201
    html = response.content.decode()
    jobs = list(Job.objects.order_by("provider"))
    assert [j.provider for j in jobs] == ["apixo", "local"]
    assert jobs[0].batch == jobs[1].batch
    assert f"/jobs/batch/{jobs[0].batch}/compare/" in html

    page = owner_client.get(f"/jobs/batch/{jobs[0].batch}/compare/").content.decode()
    for job in jobs:
        assert f'id="tile-{job.pk}"' in page
    assert "APIXO" in page and "Local (Pillow)" in page
    assert "$0.01" in page and "free" in page
    assert "every 2s" in page  # still running: the grid refreshes itself


def test_the_compare_page_is_team_scoped(client, make_job, owner, team, outsider):
    job = make_job(owner, team)
    client.force_login(outsider)
    assert client.get(f"/jobs/batch/{job.batch}/compare/").status_code == 404
    assert client.get(f"/jobs/batch/{uuid.uuid4()}/compare/").status_code == 404


def test_the_providers_page_lists_all_six_with_their_figures(owner_client, make_job, owner, team):
    make_job(owner, team)
    failed = make_job(owner, team, run=False)
    Job.objects.filter(pk=failed.pk).update(state="failed", error_message="It broke badly.")
    html = owner_client.get("/providers/").content.decode()
    for slug in ("local", "pixazo", "pixelcut", "fal", "ximilar", "apixo"):
        assert f'id="provider-{slug}"' in html
    local = html.split('id="provider-local"')[1].split("</tr>")[0]
    assert "50%" in local and "of 2" in local and "It broke badly." in local
    pixazo = html.split('id="provider-pixazo"')[1].split("</tr>")[0]
    assert "sandbox" in pixazo and "no jobs yet" in pixazo


def test_sandbox_jobs_are_marked(owner_client, owner, team):
    (job,) = intake.submit_uploads(
        user=owner, team=team, files=[upload("s.png")], choices=[("apixo", {})]
    )
    assert job.sandbox is True
    row = owner_client.get(f"/jobs/{job.pk}/row/").content.decode()
    assert 'class="badge sandbox"' in row
