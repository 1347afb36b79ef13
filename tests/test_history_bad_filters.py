"""One bad value in History's URL drops only that filter; the page says which and why."""

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.models import Job


@pytest.fixture
def jobs(make_job, owner, teammate, team):
    sea = make_job(owner, team, name="sea.png")
    forest = make_job(teammate, team, name="forest.png", run=False)
    Job.objects.filter(pk=forest.pk).update(created_at=timezone.now() - timedelta(days=10))
    return {"sea": sea, "forest": forest}


def names(response):
    return sorted(job.input_name for job in response.context["page"].jobs)


def ignored(response):
    return response.context["form"].ignored


@pytest.mark.parametrize(
    "bad,message",
    [
        ("since=2026-13-45", "Ignored 'From': enter a valid date."),
        ("until=yesterday", "Ignored 'To': enter a valid date."),
        ("state=bogus", "Ignored 'Status': 'bogus' is not one of the choices."),
        ("provider=nope", "Ignored 'Provider': 'nope' is not one of the choices."),
        ("person=abc", "Ignored 'Person': no such person in your teams."),
    ],
)
def test_a_bad_value_drops_only_its_own_filter(owner_client, jobs, bad, message):
    response = owner_client.get(f"/jobs/?q=sea&{bad}")
    assert response.status_code == 200
    assert names(response) == ["sea.png"]  # q=sea still applied
    assert ignored(response) == [message]
    assert message.replace("'", "&#x27;") in response.content.decode()


def test_the_other_date_still_applies(owner_client, jobs):
    recent = (timezone.now() - timedelta(days=2)).date().isoformat()
    response = owner_client.get(f"/jobs/?since={recent}&state=bogus")
    assert names(response) == ["sea.png"]
    assert len(ignored(response)) == 1


def test_a_person_of_another_team_is_ignored_not_shown(owner_client, jobs, outsider):
    response = owner_client.get(f"/jobs/?person={outsider.pk}")
    assert names(response) == ["forest.png", "sea.png"]
    assert ignored(response) == ["Ignored 'Person': no such person in your teams."]


def test_good_filters_say_nothing(owner_client, jobs):
    response = owner_client.get("/jobs/?state=queued")
    assert names(response) == ["forest.png"]
    assert ignored(response) == []
    assert "Ignored" not in response.content.decode()


def test_the_note_comes_with_the_htmx_results(owner_client, jobs):
    response = owner_client.get(
        "/jobs/?state=bogus", headers={"HX-Request": "true", "HX-Target": "results"}
    )
    assert "Ignored &#x27;Status&#x27;" in response.content.decode()
    assert "<h1>" not in response.content.decode()
