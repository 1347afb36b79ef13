"""HEAD on a job's files answers like GET without the body (link checkers, download
managers and `curl -I` ask first)."""

import pytest


@pytest.fixture
def job(make_job, owner, team):
    return make_job(owner, team, name="sea.png")


def test_head_on_download_answers_like_get(owner_client, job):
    got = owner_client.get(f"/jobs/{job.pk}/download/")
    head = owner_client.head(f"/jobs/{job.pk}/download/")
    assert head.status_code == 200
    assert head["Content-Disposition"] == got["Content-Disposition"]
    assert head["Content-Type"] == got["Content-Type"]
    assert head["Content-Length"] == got["Content-Length"]
    assert b"".join(head.streaming_content) == b""


@pytest.mark.parametrize(
    "which,kind", [("input", "image"), ("output", "image"), ("input", "thumb")]
)
def test_head_on_an_image_answers_like_get(owner_client, job, which, kind):
    head = owner_client.head(f"/jobs/{job.pk}/{which}/{kind}/")
    assert head.status_code == 200
    assert head["Content-Type"].startswith("image/")
    assert b"".join(head.streaming_content) == b""


def test_head_refuses_a_foreign_job(client, outsider, job):
    client.force_login(outsider)
    assert client.head(f"/jobs/{job.pk}/download/").status_code == 404


def test_other_methods_are_still_refused(owner_client, job):
    assert owner_client.post(f"/jobs/{job.pk}/download/").status_code == 405
