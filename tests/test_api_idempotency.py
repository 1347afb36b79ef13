"""Idempotency-Key on the API's creates (Stripe's semantics, jobs/api/idempotency.py): the
same request again gets the first answer and makes nothing twice; the key with another
request is refused; a duplicate while the first is still working gets 409; refusals are
kept, failures are not; keys last 24 hours."""

import datetime
import json

import pytest
from django.utils import timezone

from billing.models import LedgerEntry
from jobs import intake, tasks
from jobs.api import idempotency, tokens
from jobs.models import IdempotentRequest, Job
from tests.images import image_bytes, upload

CREATE = "/api/v1/jobs"


@pytest.fixture
def token(owner, team):
    return tokens.create(owner, "ci")[1]


@pytest.fixture
def api(client, token):
    def post(path=CREATE, key=None, image=None, provider="local", **extra):
        headers = {"Authorization": f"Bearer {token}"}
        if key:
            headers["Idempotency-Key"] = key
        if "json" in extra:
            return client.post(
                path,
                data=json.dumps(extra["json"]),
                content_type="application/json",
                headers=headers,
            )
        data = {
            "images": upload("cat.png", data=image or image_bytes(96, 80)),
            "provider": provider,
        }
        return client.post(path, data={**data, **extra}, headers=headers)

    return post


def counts():
    return Job.objects.count(), LedgerEntry.objects.count()


def test_the_same_request_again_gets_the_first_answer_and_makes_nothing(api):
    first = api(key="order-1")
    assert first.status_code == 201 and "Idempotent-Replayed" not in first
    made = counts()
    assert made[0] == 1 and made[1] >= 1  # a job and its hold

    again = api(key="order-1")
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert counts() == made  # no second job, no second hold


def test_without_a_key_each_request_makes_jobs(api):
    api()
    api()
    assert Job.objects.count() == 2


def test_the_key_with_a_different_request_is_refused(api):
    api(key="order-1")
    made = counts()
    other = api(key="order-1", image=image_bytes(120, 90))
    assert other.status_code == 422
    assert other["Content-Type"] == "application/problem+json"
    assert "used with a different request" in other.json()["detail"]
    assert counts() == made


def test_another_person_may_use_the_same_key(api, client, teammate, token):
    api(key="shared-name")
    _, theirs = tokens.create(teammate, "bob's")
    answer = client.post(
        CREATE,
        data={"images": upload("cat.png"), "provider": "local"},
        headers={"Authorization": f"Bearer {theirs}", "Idempotency-Key": "shared-name"},
    )
    assert answer.status_code == 201 and "Idempotent-Replayed" not in answer
    assert Job.objects.count() == 2


def test_a_duplicate_while_the_first_is_working_gets_409(api, monkeypatch):
    submit = intake.submit_uploads
    during = {}

    def slow_submit(**kwargs):
        # The same request arrives while the first one is still inside the endpoint.
        during["answer"] = api(key="order-1")
        return submit(**kwargs)

    monkeypatch.setattr(intake, "submit_uploads", slow_submit)
    first = api(key="order-1")
    assert first.status_code == 201
    duplicate = during["answer"]
    assert duplicate.status_code == 409
    assert duplicate["Content-Type"] == "application/problem+json"
    assert duplicate.json()["status"] == 409 and duplicate["Retry-After"]
    assert Job.objects.count() == 1

    monkeypatch.setattr(intake, "submit_uploads", submit)
    assert api(key="order-1")["Idempotent-Replayed"] == "true"  # then: the first answer


def test_a_refusal_is_kept_and_replayed(api):
    refused = api(key="order-2", provider="nonesuch")
    assert refused.status_code == 422 and refused["Content-Type"] == "application/problem+json"
    again = api(key="order-2", provider="nonesuch")
    assert again.status_code == 422 and again["Idempotent-Replayed"] == "true"
    assert again.json() == refused.json()
    assert again["Content-Type"] == "application/problem+json"
    assert Job.objects.count() == 0


def test_a_failure_is_forgotten_so_the_key_can_be_retried(api, client, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(intake, "submit_uploads", broken)
    client.raise_request_exception = False
    assert api(key="order-3").status_code == 500
    assert not IdempotentRequest.objects.exists()

    monkeypatch.undo()
    retried = api(key="order-3")
    assert retried.status_code == 201 and "Idempotent-Replayed" not in retried


def test_a_key_lasts_24_hours(api):
    api(key="order-4")
    IdempotentRequest.objects.update(created_at=timezone.now() - datetime.timedelta(hours=25))
    later = api(key="order-4")
    assert later.status_code == 201 and "Idempotent-Replayed" not in later
    assert Job.objects.count() == 2
    assert IdempotentRequest.objects.get().created_at > timezone.now() - datetime.timedelta(
        minutes=1
    )


def test_the_daily_purge_forgets_old_keys(api):
    api(key="old")
    api(key="new", image=image_bytes(50, 50))
    IdempotentRequest.objects.filter(key="old").update(
        created_at=timezone.now() - datetime.timedelta(hours=25)
    )
    result = tasks.purge_expired()
    assert result["idempotency_keys"] == 1
    assert list(IdempotentRequest.objects.values_list("key", flat=True)) == ["new"]


def test_the_answer_is_stored_without_the_token(api, token):
    api(key="order-5")
    row = IdempotentRequest.objects.get()
    assert row.status == 201 and json.loads(row.body)["jobs"]
    assert token.split("_", 2)[2] not in row.body


def test_rerun_is_idempotent_too(api, owner):
    job_id = api().json()["jobs"][0]["id"]
    path = f"{CREATE}/{job_id}/rerun"
    first = api(path=path, key="again-1", json={})
    assert first.status_code == 201, first.content
    made = counts()
    again = api(path=path, key="again-1", json={})
    assert again["Idempotent-Replayed"] == "true" and again.json() == first.json()
    assert counts() == made
    changed = api(path=path, key="again-1", json={"providers": [{"provider": "local"}]})
    assert changed.status_code == 422


def test_a_key_too_long_is_refused(api):
    answer = api(key="x" * 256)
    assert answer.status_code == 422 and "Idempotency-Key" in answer.json()["detail"]
    assert Job.objects.count() == 0


def test_the_schema_documents_the_header_and_its_answers(client, db):
    schema = client.get("/api/v1/openapi.json").json()
    for path in ("/api/v1/jobs", "/api/v1/jobs/{job_id}/rerun"):
        op = schema["paths"][path]["post"]
        assert idempotency.HEADER in [p["name"] for p in op["parameters"]]
        assert {"409", "422"} <= set(op["responses"])


def killed_before_answering(key: str, **age):
    """The database as a process SIGKILLed between its jobs' commit and storing its answer
    leaves it (the claim still in progress), `age` ago."""
    when = timezone.now() - datetime.timedelta(**age)
    IdempotentRequest.objects.filter(key=key).update(status=None, body="", created_at=when)


def test_a_call_killed_after_making_its_jobs_is_answered_from_them(api, settings):
    settings.IDEMPOTENCY_STALE_SECONDS = 120
    first = api(key="order-9")
    assert first.status_code == 201
    made = counts()
    assert Job.objects.get().idempotent_request.key == "order-9"  # written with the job

    killed_before_answering("order-9", seconds=30)
    assert api(key="order-9").status_code == 409  # it might still be working

    killed_before_answering("order-9", seconds=121)
    again = api(key="order-9")
    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    assert again.json()["jobs"][0]["id"] == first.json()["jobs"][0]["id"]
    assert counts() == made  # nothing made twice, nothing held twice
    assert IdempotentRequest.objects.get(key="order-9").status == 201  # stored for later


def test_a_call_killed_before_making_anything_frees_its_key(api, settings):
    settings.IDEMPOTENCY_STALE_SECONDS = 120
    assert api(key="order-10", provider="nonesuch").status_code == 422
    killed_before_answering("order-10", seconds=121)
    retried = api(key="order-10", provider="nonesuch")
    assert retried.status_code == 422 and "Idempotent-Replayed" not in retried  # ran again
    assert IdempotentRequest.objects.get(key="order-10").status == 422
