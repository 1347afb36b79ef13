"""An open History page shows new jobs of the user's teams as they are made: its first
page polls /jobs/newer/ for the rows above the newest it shows (same filters)."""

import html
import re

import pytest

from jobs import history as history_pages

LIVE = re.compile(r'<tbody id="history-live"[^>]*hx-get="([^"]+)"')


def live_url(response) -> str | None:
    found = LIVE.search(response.content.decode())
    return html.unescape(found.group(1)) if found else None


def row_ids(response) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr id="job-(\d+)"', response.content.decode())]


@pytest.fixture
def first(make_job, owner, team):
    return make_job(owner, team, name="first.png", run=False)


def test_a_new_job_of_my_team_appears(owner_client, make_job, teammate, team, first):
    url = live_url(owner_client.get("/jobs/"))
    assert url.startswith("/jobs/newer/?")
    assert owner_client.get(url).status_code == 204  # nothing new yet: nothing to swap

    new = make_job(teammate, team, name="new.png", run=False)
    response = owner_client.get(url)

    assert response.status_code == 200
    assert row_ids(response) == [new.pk]  # not the job already on the page
    # The next poll asks for what is newer than `new`: nothing, and never `new` again.
    assert owner_client.get(live_url(response)).status_code == 204


def test_another_teams_job_never_appears(owner_client, make_job, outsider, other_team, first):
    url = live_url(owner_client.get("/jobs/"))
    make_job(outsider, other_team, name="foreign.png", run=False)
    assert owner_client.get(url).status_code == 204


def test_the_page_filters_apply(owner_client, make_job, owner, team, first):
    url = live_url(owner_client.get("/jobs/?q=sea"))
    assert "q=sea" in url
    make_job(owner, team, name="forest.png", run=False)
    sea = make_job(owner, team, name="sea.png", run=False)
    assert row_ids(owner_client.get(url)) == [sea.pk]


def test_an_empty_page_polls_too(owner_client, make_job, owner, team, first):
    url = live_url(owner_client.get("/jobs/?q=sea"))  # no job matches yet
    sea = make_job(owner, team, name="sea.png", run=False)
    assert row_ids(owner_client.get(url)) == [sea.pk]


def test_many_new_jobs_come_a_page_at_a_time_oldest_first(
    owner_client, make_job, owner, team, first, monkeypatch
):
    monkeypatch.setattr(history_pages, "PAGE_SIZE", 2)
    url = live_url(owner_client.get("/jobs/"))
    a, b, c = (make_job(owner, team, name=f"{n}.png", run=False) for n in "abc")
    response = owner_client.get(url)
    assert row_ids(response) == [b.pk, a.pk]  # newest first, as the table reads
    response = owner_client.get(live_url(response))
    assert row_ids(response) == [c.pk]


def test_only_the_first_page_polls(owner_client, make_job, owner, team, first, monkeypatch):
    monkeypatch.setattr(history_pages, "PAGE_SIZE", 1)
    make_job(owner, team, name="second.png", run=False)
    top = owner_client.get("/jobs/")
    assert live_url(top)
    older = re.search(r'href="(\?older=[^"]+)"', top.content.decode()).group(1)
    assert live_url(owner_client.get("/jobs/" + html.unescape(older))) is None
    assert live_url(owner_client.get(f"/jobs/?batch={first.batch}")) is None


def test_a_bad_cursor_is_refused_in_words(owner_client, first):
    response = owner_client.get("/jobs/newer/?after=garbage")
    assert response.status_code == 400
    assert "not understood" in response.content.decode()


def test_it_needs_a_sign_in(client, first):
    assert client.get("/jobs/newer/").status_code == 302
