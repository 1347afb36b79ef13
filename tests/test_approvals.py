"""Approval above a limit (jobs/approvals.py): a submission quoted above the team's
approval limit waits in `awaiting_approval`, holding its quote, until a manager approves
(it runs) or rejects it with a reason (its holds are released); the rest of the portal
leaves waiting jobs alone."""

import datetime
import json
from decimal import Decimal

import pytest
from django.utils import timezone

from billing import ledger
from billing.models import LedgerEntry, OpenHold, PriceBook, TeamEvent
from jobs import approvals, intake, pipeline
from jobs.api import tokens
from jobs.models import Job, JobEvent
from tests.images import upload

WAITING = Job.State.AWAITING_APPROVAL


@pytest.fixture
def priced_local(db):
    """Local (Pillow, real, runs inline) at $0.50 an image: real spend the tests can run."""
    PriceBook.objects.create(
        provider="local",
        version=2,
        rule={"kind": "flat", "price": "0.50"},
        effective_from=timezone.now() - datetime.timedelta(seconds=1),
    )


@pytest.fixture
def limited(team, priced_local):
    team.monthly_budget = Decimal("10.00")
    team.approval_threshold = Decimal("0.75")
    team.save()
    return team


def submit(user, team, n=2, provider="local", **options):
    files = [upload(f"p{i}.png") for i in range(n)]
    return intake.submit_uploads(
        user=user, team=team, files=files, choices=[(provider, options or {"scale": 2})]
    )


def states(jobs):
    return {Job.objects.get(pk=j.pk).state for j in jobs}


def details(job):
    return list(JobEvent.objects.filter(job=job).values_list("detail", flat=True))


def open_holds(team):
    return sum((h.amount for h in OpenHold.objects.filter(team=team)), Decimal(0))


def api(client, user, path, body=None):
    _row, token = tokens.create(user, "script")
    return client.post(
        path,
        json.dumps(body or {}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


# --- at submission ----------------------------------------------------------------------------
def test_a_submission_above_the_limit_waits_holding_its_quote(limited, teammate, inline_tasks):
    with inline_tasks():
        jobs = submit(teammate, limited)
    assert states(jobs) == {WAITING}  # not handed to the worker, even with tasks inline
    assert all(j.state == WAITING for j in jobs)  # what the upload page shows
    assert open_holds(limited) == Decimal("1.00")
    assert ledger.usage(limited).held == Decimal("1.00")
    assert details(jobs[0])[-1] == (
        "Waiting for a manager's approval: quoted $1.00, above the team's limit of $0.75."
    )
    assert not Job.objects.filter(pk=jobs[0].pk, enqueued_at__isnull=False).exists()


def test_a_submission_at_the_limit_goes_straight_on(limited, teammate, inline_tasks):
    limited.approval_threshold = Decimal("1.00")
    limited.save()
    with inline_tasks():
        jobs = submit(teammate, limited)
    assert states(jobs) == {Job.State.SUCCEEDED}


def test_no_limit_means_nothing_waits(team, priced_local, teammate, inline_tasks):
    with inline_tasks():
        jobs = submit(teammate, team, n=3)
    assert states(jobs) == {Job.State.SUCCEEDED}


def test_a_sandbox_only_submission_is_not_billed_so_never_waits(team, teammate):
    team.approval_threshold = Decimal("0.00")
    team.save()
    jobs = submit(teammate, team, provider="pixazo", scale=2)
    assert jobs[0].sandbox and jobs[0].quoted_amount > 0
    assert states(jobs) == {Job.State.QUEUED}


def test_the_managers_are_emailed(
    limited, owner, teammate, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        submit(teammate, limited)
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == ["alice@example.com"]  # managers only, not bob
    assert mail.subject == "bob asks to spend $1.00 in Studio: approve or reject"
    assert "above Studio's approval limit of $0.75" in mail.body
    assert "/spend/#approvals" in mail.body


# --- the spend page ---------------------------------------------------------------------------
def test_the_spend_page_lists_waiting_submissions(limited, owner, teammate, owner_client):
    jobs = submit(teammate, limited)
    html = owner_client.get("/spend/").content.decode()
    section = html.split('id="approvals"')[1].split("</section>")[0]
    assert "Awaiting approval" in html
    assert f'id="approval-{jobs[0].batch}"' in section
    assert "$1.00" in section and "2 jobs by <strong>bob</strong> in Studio" in section
    assert f"/spend/approvals/{jobs[0].batch}/approve/" in section
    for reason in approvals.REASONS:
        assert f'<option value="{reason}">' in section


def test_approve_queues_the_jobs_and_they_run(limited, owner, teammate, owner_client, inline_tasks):
    jobs = submit(teammate, limited)
    with inline_tasks():
        response = owner_client.post(
            f"/spend/approvals/{jobs[0].batch}/approve/", HTTP_HX_REQUEST="true"
        )
    assert response.status_code == 200
    assert "Approved: 2 jobs queued for the providers." in response.content.decode()
    assert states(jobs) == {Job.State.SUCCEEDED}
    job = Job.objects.get(pk=jobs[0].pk)
    assert job.approval_decided_by == owner and job.approval_decided_at is not None
    assert "Approved by alice." in details(job)
    charges = LedgerEntry.objects.filter(team=limited, kind="charge")
    assert sum(c.amount for c in charges) == Decimal("1.00")
    assert open_holds(limited) == 0


def test_reject_cancels_and_releases_the_holds(limited, owner, teammate, owner_client):
    jobs = submit(teammate, limited)
    response = owner_client.post(
        f"/spend/approvals/{jobs[0].batch}/reject/", {"reason": "Use a cheaper provider"}
    )
    assert response.status_code == 302
    assert states(jobs) == {Job.State.CANCELED}
    job = Job.objects.get(pk=jobs[0].pk)
    assert (job.approval_decided_by, job.approval_reason) == (owner, "Use a cheaper provider")
    assert details(job)[-1] == "Rejected by alice: Use a cheaper provider."
    # The ledger stays exact: each hold closed by a release row, nothing edited or charged.
    rows = LedgerEntry.objects.filter(team=limited)
    assert sorted(rows.values_list("kind", flat=True)) == ["hold", "hold", "release", "release"]
    assert sum(r.amount for r in rows.filter(kind="release")) == Decimal("1.00")
    assert open_holds(limited) == 0
    assert ledger.usage(limited).held == 0 and ledger.usage(limited).spent == 0
    page = owner_client.get(job.get_absolute_url()).content.decode()
    assert "Rejected by alice: Use a cheaper provider." in page


def test_reject_needs_a_reason_from_the_list(limited, owner, teammate, owner_client):
    jobs = submit(teammate, limited)
    for reason in ("", "because"):
        response = owner_client.post(
            f"/spend/approvals/{jobs[0].batch}/reject/", {"reason": reason}, HTTP_HX_REQUEST="true"
        )
        assert response.status_code == 422
        assert "Pick a reason" in response.content.decode()
    assert states(jobs) == {WAITING}


def test_a_member_cannot_decide_and_an_outsider_sees_nothing(
    limited, owner, teammate, outsider, client
):
    jobs = submit(teammate, limited)
    url = f"/spend/approvals/{jobs[0].batch}/approve/"
    client.force_login(teammate)
    assert client.post(url).status_code == 403
    client.force_login(outsider)
    assert client.post(url).status_code == 404
    assert (
        client.post(url.replace("approve", "reject"), {"reason": "Not needed"}).status_code == 404
    )
    assert states(jobs) == {WAITING}


def test_double_approve_is_harmless(limited, owner, teammate, owner_client, inline_tasks):
    jobs = submit(teammate, limited)
    url = f"/spend/approvals/{jobs[0].batch}/approve/"
    with inline_tasks():
        owner_client.post(url, HTTP_HX_REQUEST="true")
        again = owner_client.post(url, HTTP_HX_REQUEST="true")
    assert "decided already" in again.content.decode()
    assert approvals.approve(owner, jobs[0].batch).count == 0
    assert approvals.reject(owner, jobs[0].batch, "Not needed").count == 0
    assert states(jobs) == {Job.State.SUCCEEDED}
    assert details(Job.objects.get(pk=jobs[0].pk)).count("Approved by alice.") == 1


# --- the API ----------------------------------------------------------------------------------
def test_the_api_approves_and_rejects_for_managers(limited, owner, teammate, client):
    first, second = submit(teammate, limited), submit(teammate, limited)
    response = api(client, owner, f"/api/v1/jobs/{first[1].pk}/approve")
    assert response.status_code == 200
    body = response.json()
    assert (body["state"], sorted(body["decided"])) == ("queued", sorted(j.pk for j in first))
    response = api(client, owner, f"/api/v1/jobs/{second[0].pk}/reject", {"reason": "Not needed"})
    assert response.json()["state"] == "canceled"
    assert states(second) == {Job.State.CANCELED}
    again = api(client, owner, f"/api/v1/jobs/{second[0].pk}/reject", {"reason": "Not needed"})
    assert (again.status_code, again.json()["decided"]) == (200, [])


def test_the_api_refuses_members_and_hides_from_outsiders(
    limited, owner, teammate, outsider, client
):
    jobs = submit(teammate, limited)
    member = api(client, teammate, f"/api/v1/jobs/{jobs[0].pk}/approve")
    assert member.status_code == 403
    assert member["Content-Type"] == "application/problem+json"
    assert "Only managers of Studio" in member.json()["detail"]
    assert api(client, outsider, f"/api/v1/jobs/{jobs[0].pk}/approve").status_code == 404
    bad = api(client, owner, f"/api/v1/jobs/{jobs[0].pk}/reject", {"reason": "meh"})
    assert bad.status_code == 422
    assert states(jobs) == {WAITING}


# --- the rest of the portal leaves waiting jobs alone -----------------------------------------
def test_tracker_sweep_and_recovery_ignore_waiting_jobs(limited, teammate, sync_tasks):
    jobs = submit(teammate, limited)
    long_ago = timezone.now() - datetime.timedelta(hours=2)
    # What would make the tracker or recovery act on a queued job: due, or lost long ago.
    Job.objects.filter(pk__in=[j.pk for j in jobs]).update(
        next_poll_at=long_ago, enqueued_at=long_ago, lease_expires_at=long_ago
    )
    report = pipeline.sweep()
    assert report == {"requeued": 0, "stopped": 0, "released": 0}
    assert states(jobs) == {WAITING}
    assert open_holds(limited) == Decimal("1.00")


def test_a_member_may_cancel_a_waiting_job_which_releases_its_hold(limited, teammate, client):
    jobs = submit(teammate, limited)
    client.force_login(teammate)
    page = client.get(jobs[0].get_absolute_url()).content.decode()
    assert "Waiting for a manager's approval." in page
    assert "Cancel job" in page and "Approve" not in page
    assert client.post(f"/jobs/{jobs[0].pk}/cancel/").status_code == 302
    assert Job.objects.get(pk=jobs[0].pk).state == Job.State.CANCELED
    assert Job.objects.get(pk=jobs[1].pk).state == WAITING
    assert open_holds(limited) == Decimal("0.50")


def test_history_shows_the_badge_and_keeps_polling(limited, teammate, client):
    jobs = submit(teammate, limited)
    client.force_login(teammate)
    row = client.get(f"/jobs/{jobs[0].pk}/row/").content.decode()
    assert "Awaiting approval" in row
    assert 'hx-trigger="every 10s"' in row  # not final: the row updates once decided


# --- the team page ----------------------------------------------------------------------------
def test_the_team_page_sets_the_limit_with_an_audit_line(team, owner, teammate, client):
    client.force_login(owner)
    response = client.post(f"/teams/{team.pk}/approval/", {"approval_threshold": "25"})
    assert response.status_code == 302
    team.refresh_from_db()
    assert team.approval_threshold == Decimal("25.00")
    event = TeamEvent.objects.get(team=team)
    assert event.text == "alice set the approval limit to $25.00"
    assert event.get_kind_display() == "Approval limit"  # its own kind, not "Budget"
    page = client.get(f"/teams/{team.pk}/").content.decode()
    assert "Submissions quoted above <strong>$25.00</strong> wait" in page
    client.post(f"/teams/{team.pk}/approval/", {"approval_threshold": ""})
    team.refresh_from_db()
    assert team.approval_threshold is None
    bad = client.post(f"/teams/{team.pk}/approval/", {"approval_threshold": "lots"})
    assert bad.status_code == 422
    client.force_login(teammate)
    assert (
        client.post(f"/teams/{team.pk}/approval/", {"approval_threshold": "1"}).status_code == 403
    )
