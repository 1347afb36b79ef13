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
    return [job.input_name for job in response.context["page"].jobs]


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


def _link(response, rel):
    import re

    found = re.search(rf'href="([^"]+)"[^>]*rel="{rel}"', response.content.decode())
    return found and found.group(1).replace("&amp;", "&")


def test_it_pages_by_cursor_through_jobs_that_share_a_time(owner_client, owner, team, make_job):
    # 60 jobs, in clumps of 7 with the same created_at: a cursor of (created_at, id) walks
    # them all, none twice, in the order of the list, both ways.
    made = [make_job(owner, team, name=f"img{i:02d}.png", run=False) for i in range(60)]
    base = timezone.now() - timedelta(hours=1)
    for i, job in enumerate(made):
        Job.objects.filter(pk=job.pk).update(created_at=base + timedelta(seconds=i // 7))
    expected = [j.input_name for j in Job.objects.filter(team=team).order_by("-created_at", "-id")]
    pages, response = [], owner_client.get("/jobs/")
    assert "The newest 25 jobs" in response.content.decode()
    while True:
        pages.append(names(response))
        older = _link(response, "next")
        if not older:
            break
        response = owner_client.get("/jobs/" + older)
    assert [len(p) for p in pages] == [25, 25, 10]
    assert sum(pages, []) == expected
    # And back up: "Newer" from the last page gives the middle one, then the newest.
    back = owner_client.get("/jobs/" + _link(response, "prev"))
    assert names(back) == pages[1]
    top = owner_client.get("/jobs/" + _link(back, "prev"))
    assert names(top) == pages[0] and not _link(top, "prev")


def test_a_cursor_keeps_the_filters(owner_client, owner, team, make_job):
    for i in range(30):
        make_job(owner, team, name=f"keep{i:02d}.png", run=False)
    for i in range(5):
        make_job(owner, team, name=f"other{i}.png", run=False)
    first = owner_client.get("/jobs/?q=keep")
    second = owner_client.get("/jobs/" + _link(first, "next"))
    assert len(names(first)) == 25 and len(names(second)) == 5
    assert all(n.startswith("keep") for n in names(second))


@pytest.mark.parametrize("cursor", ["older=garbage", "older=12.x", "newer=-5.3", "older=9" * 30])
def test_a_damaged_cursor_shows_the_newest_jobs_and_says_so(owner_client, jobs, cursor):
    response = owner_client.get(f"/jobs/?{cursor}")
    assert response.status_code == 200
    assert names(response) == ["sea.png", "forest.png"]
    assert "was not understood" in response.content.decode()


def test_a_small_set_is_counted_and_a_big_one_is_not(owner_client, jobs, owner, team, make_job):
    assert "2 jobs" in owner_client.get("/jobs/").content.decode()
    for i in range(30):
        make_job(owner, team, name=f"n{i}.png", run=False)
    html = owner_client.get("/jobs/").content.decode()
    assert "The newest 25 jobs" in html and "32 jobs" not in html


def test_a_member_of_several_teams_can_pick_one(client, owner, team, other_team, make_job):
    from billing.models import Membership

    Membership.objects.create(team=other_team, user=owner, role=Membership.Role.MEMBER)
    make_job(owner, team, name="mine.png", run=False)
    make_job(owner, other_team, name="theirs.png", run=False)
    client.force_login(owner)
    assert sorted(names(client.get("/jobs/"))) == ["mine.png", "theirs.png"]
    assert names(client.get(f"/jobs/?team={other_team.pk}")) == ["theirs.png"]
    assert 'name="team"' in client.get("/jobs/").content.decode()


def test_a_page_costs_the_same_few_queries_however_deep(
    owner_client, owner, team, make_job, django_assert_max_num_queries
):
    for i in range(60):
        make_job(owner, team, name=f"q{i:02d}.png")
    owner_client.get("/jobs/")  # warm: session, user
    with django_assert_max_num_queries(8):
        first = owner_client.get("/jobs/")
    third = "/jobs/" + _link(owner_client.get("/jobs/" + _link(first, "next")), "next")
    with django_assert_max_num_queries(8):  # the same as the first page's
        assert len(names(owner_client.get(third))) == 10


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


def test_postgres_searches_names_through_the_trigram_index(owner, team, make_job):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("pg_trgm is PostgreSQL's (SQLite scans, which is fine at its size)")
    make_job(owner, team, name="forest-walk.png", run=False)
    jobs = Job.objects.filter(input_name__icontains="est-wa")
    with connection.cursor() as cursor:
        # A handful of rows: without these the planner rightly just reads them all. Left
        # only with bitmap scans, it needs an index whose condition is the search.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        plan = jobs.order_by().explain()
    # The index matches the expression Django's icontains compares, so the ORM uses it.
    assert "job_name_trgm" in plan
    assert [j.input_name for j in jobs] == ["forest-walk.png"]
