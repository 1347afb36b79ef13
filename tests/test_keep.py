"""'Keep this one': one chosen result per image of a batch, shown in History, on the
compare and job pages, and in the spend CSV."""

import csv
import io
import uuid
from decimal import Decimal

import pytest

from billing.models import LedgerEntry
from jobs.models import Job
from tests.rows import bare_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def batch(team, owner):
    """One batch: two images, each sent to two providers, all succeeded."""
    batch = uuid.uuid4()

    def job(name, provider):
        return bare_job(
            team,
            batch=batch,
            created_by=owner,
            provider=provider,
            input_name=name,
            input_file=f"inputs/{name}",
            state=Job.State.SUCCEEDED,
            output_width=20,
            output_height=20,
        )

    return {
        "a-local": job("a.png", "local"),
        "a-apixo": job("a.png", "apixo"),
        "b-local": job("b.png", "local"),
        "b-apixo": job("b.png", "apixo"),
    }


def keep(client, job, **data):
    return client.post(f"/jobs/{job.pk}/keep/", data)


def kept(batch) -> set:
    return {name for name, job in batch.items() if Job.objects.get(pk=job.pk).kept}


def test_keeping_a_result_marks_it_and_who_chose_it(owner_client, owner, batch):
    response = keep(owner_client, batch["a-apixo"])
    assert response.status_code == 302
    assert response["Location"] == f"/jobs/{batch['a-apixo'].pk}/"
    job = Job.objects.get(pk=batch["a-apixo"].pk)
    assert job.kept and job.kept_by == owner


def test_a_second_press_unkeeps_it(owner_client, batch):
    keep(owner_client, batch["a-apixo"])
    keep(owner_client, batch["a-apixo"])
    assert kept(batch) == set()
    assert Job.objects.get(pk=batch["a-apixo"].pk).kept_by is None


def test_an_explicit_choice_does_not_flip_on_a_double_submit(owner_client, batch):
    keep(owner_client, batch["a-apixo"], keep="1")
    keep(owner_client, batch["a-apixo"], keep="1")
    assert kept(batch) == {"a-apixo"}
    keep(owner_client, batch["a-apixo"], keep="0")
    assert kept(batch) == set()


def test_one_kept_result_per_image_of_a_batch(owner_client, batch):
    keep(owner_client, batch["a-local"])
    keep(owner_client, batch["b-apixo"])
    assert kept(batch) == {"a-local", "b-apixo"}
    keep(owner_client, batch["a-apixo"])  # another result of the same image: replaces it
    assert kept(batch) == {"a-apixo", "b-apixo"}


def test_a_teammate_may_choose_too(client, teammate, batch):
    client.force_login(teammate)
    assert keep(client, batch["a-local"]).status_code == 302
    assert kept(batch) == {"a-local"}


def test_it_refuses_a_foreign_job(client, outsider, batch):
    client.force_login(outsider)
    assert keep(client, batch["a-local"]).status_code == 404
    assert keep(client, Job(pk=999_999)).status_code == 404
    assert kept(batch) == set()


def test_it_needs_a_post(owner_client, batch):
    assert owner_client.get(f"/jobs/{batch['a-local'].pk}/keep/").status_code == 405


def test_only_a_finished_result_can_be_kept(owner_client, team, owner):
    job = bare_job(team, created_by=owner, state=Job.State.RUNNING)
    response = keep(owner_client, job)
    assert response.status_code == 409
    assert "Only a finished result" in response.content.decode()
    assert not Job.objects.get(pk=job.pk).kept


def test_a_result_whose_files_were_deleted_cannot_be_kept(owner_client, owner, batch):
    from jobs import deletion

    deletion.delete_files(Job.objects.get(pk=batch["a-apixo"].pk), by=owner)
    response = keep(owner_client, batch["a-apixo"])
    assert response.status_code == 409
    assert "files were deleted" in response.content.decode()
    assert not Job.objects.get(pk=batch["a-apixo"].pk).kept
    page = owner_client.get(f"/jobs/batch/{batch['a-apixo'].batch}/compare/").content.decode()
    assert f"/jobs/{batch['a-apixo'].pk}/keep/" not in page


def test_it_goes_back_to_the_page_it_came_from_on_this_site_only(owner_client, batch):
    job = batch["a-local"]
    back = f"/jobs/batch/{job.batch}/compare/"
    assert keep(owner_client, job, next=back)["Location"] == back
    assert keep(owner_client, job, next="https://evil.example/")["Location"] == f"/jobs/{job.pk}/"


def test_history_rows_show_the_kept_badge(owner_client, batch):
    keep(owner_client, batch["a-apixo"])
    html = owner_client.get(f"/jobs/?batch={batch['a-apixo'].batch}").content.decode()
    assert html.count('class="badge kept"') == 1
    row = html.split(f'id="job-{batch["a-apixo"].pk}"')[1].split("</tr>")[0]
    assert 'class="badge kept"' in row


def test_the_compare_page_has_keep_buttons_and_shows_the_choice(owner_client, batch):
    url = f"/jobs/batch/{batch['a-local'].batch}/compare/"
    html = owner_client.get(url).content.decode()
    assert html.count("Keep this one") == 4
    keep(owner_client, batch["b-local"])
    html = owner_client.get(url).content.decode()
    assert html.count("Keep this one") == 3
    tile = html.split(f'id="tile-{batch["b-local"].pk}"')[1].split("</figure>")[0]
    assert 'class="badge kept"' in tile and "Kept" in tile


def test_the_htmx_keep_answers_with_the_compare_grid(owner_client, batch):
    job = batch["a-local"]
    response = owner_client.post(
        f"/jobs/{job.pk}/keep/",
        {"next": f"/jobs/batch/{job.batch}/compare/"},
        headers={"HX-Request": "true", "HX-Target": "compare"},
        follow=True,
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="compare"')
    assert 'class="badge kept"' in html


def test_the_job_page_has_the_keep_button_for_a_succeeded_job(owner_client, team, batch):
    job = batch["a-local"]
    html = owner_client.get(f"/jobs/{job.pk}/").content.decode()
    assert "Keep this one" in html and 'class="badge kept"' not in html
    keep(owner_client, job)
    html = owner_client.get(f"/jobs/{job.pk}/").content.decode()
    assert 'class="badge kept"' in html
    running = bare_job(team, state=Job.State.RUNNING)
    assert "Keep this one" not in owner_client.get(f"/jobs/{running.pk}/").content.decode()


def test_the_spend_csv_has_a_kept_column(owner_client, team, owner, batch):
    for n, name in enumerate(("a-local", "a-apixo")):
        LedgerEntry.objects.create(
            team=team,
            job=batch[name],
            user=owner,
            provider=batch[name].provider,
            kind="charge",
            amount=Decimal("0.05"),
            idempotency_key=f"keep-{n}",
        )
    keep(owner_client, batch["a-apixo"])
    body = b"".join(owner_client.get("/spend/export.csv").streaming_content).decode()
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0][-1] == "kept"
    by_job = {row[4]: row[-1] for row in rows[1:]}
    assert by_job == {str(batch["a-local"].pk): "no", str(batch["a-apixo"].pk): "yes"}
