"""The job page's "Run again" form: a refusal is shown at the form, with exactly what
was sent (nothing re-ticked), and with htmx only the form's section changes."""

import re

import pytest

from jobs.models import Job

HTMX = {"HX-Request": "true", "HX-Target": "rerun", "HX-Current-URL": "http://testserver/"}


@pytest.fixture
def job(make_job, owner, team):
    return make_job(owner, team, name="sea.png", scale=2)


def rerun_section(response) -> str:
    html = response.content.decode()
    start = html.index('<section class="card" id="rerun"')
    return html[start : html.index("</section>", start)]


def ticked(section) -> list[str]:
    return re.findall(r'name="provider" value="([\w-]+)" checked', section)


def selected(section, name) -> str:
    select = re.search(rf'<select name="{name}">(.*?)</select>', section, re.S).group(1)
    return re.search(r'<option value="([^"]*)" selected>', select).group(1)


def alert(section) -> str:
    return re.search(r'<div class="alert error"[^>]*>(.*?)</div>', section, re.S).group(0)


def test_no_provider_ticked_is_refused_at_the_form_with_nothing_ticked(owner_client, job):
    data = {"local-scale": "4", "ximilar-mode": "high_fidelity", "fal-creativity": "0.3"}
    response = owner_client.post(f"/jobs/{job.pk}/rerun/", data)

    assert response.status_code == 422
    section = rerun_section(response)
    assert "Pick at least one provider." in alert(section)
    # Nothing re-ticked: not even the job's own provider.
    assert ticked(section) == []
    # The options as they were sent, for every provider's panel.
    assert selected(section, "local-scale") == "4"
    assert selected(section, "ximilar-mode") == "high_fidelity"
    assert 'name="fal-creativity" value="0.3"' in section
    assert Job.objects.count() == 1


def test_the_error_is_where_the_user_is(owner_client, job):
    response = owner_client.post(f"/jobs/{job.pk}/rerun/", {"local-scale": "4"})
    section = rerun_section(response)
    # Without JavaScript the browser lands on the section (the form posts to #rerun)
    # and focuses the error.
    assert f'action="/jobs/{job.pk}/rerun/#rerun"' in section
    assert "autofocus" in alert(section)


def test_what_was_ticked_stays_ticked_when_refused(owner_client, job):
    data = {"provider": ["local", "pixazo"], "local-scale": "9", "pixazo-scale": "4"}
    response = owner_client.post(f"/jobs/{job.pk}/rerun/", data)
    assert response.status_code == 422
    section = rerun_section(response)
    assert ticked(section) == ["local", "pixazo"]
    assert selected(section, "pixazo-scale") == "4"


def test_with_htmx_only_the_section_comes_back(owner_client, job):
    response = owner_client.post(f"/jobs/{job.pk}/rerun/", {"local-scale": "3"}, headers=HTMX)
    assert response.status_code == 422
    html = response.content.decode()
    assert re.match(r'\s*<section class="card" id="rerun"', html)
    assert "<h1>" not in html and "Timeline" not in html
    assert "Pick at least one provider." in html
    section = rerun_section(response)
    assert f'hx-post="/jobs/{job.pk}/rerun/"' in section
    assert selected(section, "local-scale") == "3"


def test_with_htmx_a_started_rerun_goes_to_the_new_job(owner_client, job, inline_tasks):
    with inline_tasks():
        response = owner_client.post(
            f"/jobs/{job.pk}/rerun/", {"provider": "local", "local-scale": "3"}, headers=HTMX
        )
    again = Job.objects.exclude(pk=job.pk).get()
    assert response.status_code == 200
    assert response["HX-Redirect"] == f"/jobs/{again.pk}/"


def test_a_foreign_job_cannot_be_run_again(client, outsider, job):
    client.force_login(outsider)
    response = client.post(f"/jobs/{job.pk}/rerun/", {"provider": "local"}, headers=HTMX)
    assert response.status_code == 404
