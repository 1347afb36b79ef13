from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.models import Job


@pytest.fixture
def jobs(make_job, owner, teammate, outsider, team, other_team):
    made = {
        "sea": make_job(owner, team, name="sea.png"),
        "forest": make_job(teammate, team, name="forest.png", run=False),
        "foreign": make_job(outsider, other_team, name="foreign.png"),
    }
    Job.objects.filter(pk=made["forest"].pk).update(created_at=timezone.now() - timedelta(days=10))
    return made


def names(response):
    return [job.input_name for job in response.context["page"].object_list]


def test_it_lists_only_the_teams_jobs(owner_client, jobs):
    response = owner_client.get("/jobs/")
    assert sorted(names(response)) == ["forest.png", "sea.png"]
    assert "foreign.png" not in response.content.decode()


def test_an_outsider_sees_only_their_own_team(client, outsider, jobs):
    client.force_login(outsider)
    assert names(client.get("/jobs/")) == ["foreign.png"]


@pytest.mark.parametrize(
    "query,expected",
    [
        ("state=succeeded", ["sea.png"]),
        ("state=queued", ["forest.png"]),
        ("provider=local", ["sea.png", "forest.png"]),
        ("q=FOR", ["forest.png"]),
        ("since={recent}", ["sea.png"]),
        ("until={recent}", ["forest.png"]),
    ],
)
def test_it_filters(owner_client, jobs, query, expected):
    recent = (timezone.now() - timedelta(days=2)).date().isoformat()
    response = owner_client.get("/jobs/?" + query.format(recent=recent))
    assert names(response) == expected


def test_it_filters_by_person(owner_client, jobs, teammate):
    assert names(owner_client.get(f"/jobs/?person={teammate.pk}")) == ["forest.png"]


def test_it_filters_by_batch_and_ignores_a_bad_one(owner_client, jobs):
    batch = jobs["sea"].batch
    assert names(owner_client.get(f"/jobs/?batch={batch}")) == ["sea.png"]
    assert names(owner_client.get("/jobs/?batch=not-a-uuid")) == []


def test_it_paginates(owner_client, owner, team, make_job):
    for i in range(27):
        make_job(owner, team, name=f"img{i:02d}.png", run=False)
    first = owner_client.get("/jobs/")
    second = owner_client.get("/jobs/?page=2")
    assert len(names(first)) == 25 and len(names(second)) == 2
    assert "Page 1 of 2" in first.content.decode()


def test_htmx_filtering_gets_only_the_results(owner_client, jobs):
    response = owner_client.get(
        "/jobs/?state=succeeded", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="results"
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="results"') and "sea.png" in html
    assert "forest.png" not in html


def test_rows_show_what_users_need(owner_client, jobs):
    html = owner_client.get("/jobs/").content.decode()
    row = html.split(f'id="job-{jobs["sea"].pk}"')[1].split("</tr>")[0]
    for text in ("sea.png", "Local (Pillow)", "2x", "Succeeded", "96×80", "192×160", "alice"):
        assert text in row
    live = html.split(f'id="job-{jobs["forest"].pk}"')[1].split(">")[0]
    assert "every 2s" in live
