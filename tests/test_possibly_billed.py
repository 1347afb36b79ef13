"""Work a provider may have done (and will bill) is never lost from view: such a job keeps
its hold open as "possibly billed" until an admin resolves it, and the job page, the
spend review and its CSV show it. Issue #8, point 3."""

import csv
import datetime
import io
import re
from decimal import Decimal
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone

from billing import ledger
from billing.models import LedgerEntry, PriceBook
from jobs import intake, lifecycle, pipeline, tasks
from jobs.models import Job
from jobs.providers import Failed, ProviderError, Running
from jobs.providers.apixo import ApixoProvider
from tests.images import upload

D = Decimal
State = Job.State
NOTICE = "Possibly billed: $0.12 — the provider may have charged for this job; an admin will check"


def entries(job):
    return list(LedgerEntry.objects.filter(job=job).order_by("pk").values_list("kind", "amount"))


def hold_is_open(job) -> bool:
    return entries(job) == [("hold", D("0.1200"))]


def released(job) -> bool:
    return entries(job) == [("hold", D("0.1200")), ("release", D("0.1200"))]


@pytest.fixture
def priced(settings, owner, team):
    """accept(n) -> jobs: APIXO for real (a key is set) at $0.12 a job; nothing is sent."""
    settings.PROVIDER_SETTINGS = {
        **settings.PROVIDER_SETTINGS,
        "apixo": {"api_key": "k", "base_url": "http://127.0.0.1:9"},
    }
    PriceBook.objects.create(
        provider="apixo",
        version=100,
        rule={"kind": "flat", "price": "0.12"},
        effective_from=timezone.now() - datetime.timedelta(seconds=1),
    )
    with mock.patch.object(tasks, "enqueue_submit"), mock.patch.object(tasks, "enqueue_finish"):
        yield lambda n=1: intake.submit_uploads(
            user=owner,
            team=team,
            files=[upload(f"p{i}.png") for i in range(n)],
            choices=[("apixo", {})],
        )


def running(job) -> Job:
    assert lifecycle.claim(job.pk)
    assert lifecycle.move(
        job.pk, [State.SUBMITTING], State.RUNNING, "taken", provider_task_id="task-1"
    )
    return Job.objects.get(pk=job.pk)


def fetching(job) -> Job:
    assert lifecycle.claim(job.pk)
    assert lifecycle.move(
        job.pk,
        [State.SUBMITTING],
        State.FETCHING,
        "done",
        provider_task_id="task-1",
        result_url="https://results.example/r.png",
    )
    return Job.objects.get(pk=job.pk)


def possibly_billed(priced) -> Job:
    """A job whose result link expired before we downloaded it."""
    (job,) = priced()
    pipeline.fetch_failed(fetching(job), ProviderError("result_expired", "The link expired."))
    job.refresh_from_db()
    assert job.billing_status == "possibly_billed"
    return job


# --- which endings keep the hold ---------------------------------------------------------


@pytest.mark.parametrize("code", ["result_expired", "result_download_failed", "result_too_large"])
def test_a_result_we_could_not_download_keeps_its_hold(priced, code):
    (job,) = priced()
    pipeline.fetch_failed(fetching(job), ProviderError(code, "It did not come."))
    job.refresh_from_db()
    assert (job.state, job.error_code) == (State.FAILED, code)
    assert job.billing_status == "possibly_billed"
    assert hold_is_open(job)
    assert "Possibly billed: $0.12 stays held" in job.events.last().detail


def test_a_result_we_could_not_use_keeps_its_hold(priced):
    (job,) = priced()
    pipeline.store_result(fetching(job), b"not an image at all")
    job.refresh_from_db()
    assert (job.state, job.error_code) == (State.FAILED, "bad_result")
    assert job.billing_status == "possibly_billed" and hold_is_open(job)


def test_a_submit_stopped_as_unknown_keeps_its_hold(priced):
    """What recovery does with a submit whose worker died and whose provider cannot be
    asked: stop it as "unknown" rather than send it twice."""
    (job,) = priced()
    assert lifecycle.claim(job.pk)
    assert lifecycle.fail(job.pk, [State.SUBMITTING], "unknown", "The worker stopped.")
    job.refresh_from_db()
    assert (job.state, job.error_code) == (State.FAILED, "unknown")
    assert job.billing_status == "possibly_billed" and hold_is_open(job)


def test_a_submit_sent_without_an_answer_keeps_its_hold(priced):
    (job,) = priced()
    assert lifecycle.claim(job.pk)
    no_answer = ProviderError("timeout", "No answer.", retryable=True, maybe_received=True)
    pipeline.submit_failed(Job.objects.get(pk=job.pk), no_answer)
    job.refresh_from_db()
    assert (job.state, job.error_code) == (State.FAILED, "submit_unknown")
    assert job.billing_status == "possibly_billed" and hold_is_open(job)


def test_a_job_we_stopped_waiting_for_keeps_its_hold(priced, settings):
    (job,) = priced()
    job = running(job)
    long_ago = timezone.now() - datetime.timedelta(seconds=settings.POLL_MAX_SECONDS + 5)
    Job.objects.filter(pk=job.pk).update(submitted_at=long_ago)
    job.refresh_from_db()
    pipeline.apply_poll(job, Running("task-1"))
    job.refresh_from_db()
    assert (job.state, job.error_code) == (State.FAILED, "timeout")
    assert job.billing_status == "possibly_billed" and hold_is_open(job)


def test_a_cancel_the_provider_could_not_confirm_keeps_its_hold(priced, owner):
    (job,) = priced()
    assert not ApixoProvider.supports_cancel  # APIXO cannot stop a started task
    assert pipeline.cancel(running(job), by=owner)
    job.refresh_from_db()
    assert job.state == State.CANCELED
    assert job.billing_status == "possibly_billed" and hold_is_open(job)


def test_a_cancel_the_provider_confirmed_releases_the_hold(priced, owner):
    (job,) = priced()

    async def stopped(self, job, http):
        return True

    with (
        mock.patch.object(ApixoProvider, "supports_cancel", True),
        mock.patch.object(ApixoProvider, "cancel", stopped),
    ):
        assert pipeline.cancel(running(job), by=owner)
    job.refresh_from_db()
    assert job.state == State.CANCELED and job.billing_status == ""
    assert released(job)


def _provider_said_failed(job):
    pipeline.apply(running(job), Failed("failed", "APIXO could not upscale it."), State.RUNNING)


def _refused_at_submit(job):
    assert lifecycle.claim(job.pk)
    refused = ProviderError("http_422", "APIXO does not take this image.", status=422)
    pipeline.submit_failed(Job.objects.get(pk=job.pk), refused)


def _never_reached(job):
    assert lifecycle.claim(job.pk)
    Job.objects.filter(pk=job.pk).update(attempts=99)  # out of retries
    unreachable = ProviderError("unreachable", "No connection.", retryable=True)
    pipeline.submit_failed(Job.objects.get(pk=job.pk), unreachable)


def _canceled_while_queued(job):
    assert pipeline.cancel(job, by=None)


@pytest.mark.parametrize(
    "ending", [_provider_said_failed, _refused_at_submit, _never_reached, _canceled_while_queued]
)
def test_endings_where_the_provider_did_no_work_release_the_hold(priced, ending):
    (job,) = priced()
    ending(job)
    job.refresh_from_db()
    assert job.state in (State.FAILED, State.CANCELED)
    assert job.billing_status == "" and released(job)


# --- money -----------------------------------------------------------------------------


def test_the_budget_counts_a_possibly_billed_hold(priced, team):
    team.monthly_budget = D("0.20")
    team.save()
    possibly_billed(priced)
    use = ledger.usage(team)
    assert (use.spent, use.held, use.possibly_billed) == (D("0"), D("0.12"), D("0.12"))
    with pytest.raises(intake.SubmissionRefused) as refused:
        priced()
    assert "held for jobs a provider may have billed $0.12" in refused.value.errors[0]


def test_the_reconciler_leaves_a_possibly_billed_hold_open(priced):
    job = possibly_billed(priced)
    assert pipeline.sweep()["released"] == 0
    assert hold_is_open(job)


def test_a_crash_before_settling_is_still_judged_by_the_state_it_ended_from(priced):
    (job,) = priced()
    job = fetching(job)
    # The state changed but the ledger was never told (a crash between the two).
    Job.objects.filter(pk=job.pk).update(state=State.FAILED, error_code="result_expired")
    assert ledger.reconcile() == 0
    job.refresh_from_db()
    assert job.billing_status == "possibly_billed" and hold_is_open(job)


def test_a_sandbox_job_is_possibly_billed_apart_from_real_money(owner, team):
    with mock.patch.object(tasks, "enqueue_submit"), mock.patch.object(tasks, "enqueue_finish"):
        (job,) = intake.submit_uploads(
            user=owner, team=team, files=[upload()], choices=[("apixo", {})]
        )  # no key: the sandbox
        pipeline.fetch_failed(fetching(job), ProviderError("result_expired", "Gone."))
    job.refresh_from_db()
    assert job.sandbox and job.billing_status == "possibly_billed"
    assert [e.sandbox for e in job.ledger.all()] == [True]
    assert ledger.usage(team).held == D("0")


# --- shown ------------------------------------------------------------------------------


def test_the_job_page_says_it_may_have_been_billed(client, priced, owner, teammate):
    job = possibly_billed(priced)
    for user in (owner, teammate):
        client.force_login(user)
        html = client.get(f"/jobs/{job.pk}/").content.decode()
        cost = html.split('id="cost"')[1].split("</section>")[0]
        assert NOTICE in cost
        assert "hold was released" not in cost


def test_the_history_row_has_a_possibly_billed_badge(owner_client, priced):
    job = possibly_billed(priced)
    html = owner_client.get(f"/jobs/{job.pk}/row/").content.decode()
    assert 'class="badge possibly-billed"' in html and "not charged" not in html


def test_the_spend_review_shows_possibly_billed_apart(client, priced, owner, team):
    team.monthly_budget = D("10.00")
    team.save()
    job = possibly_billed(priced)
    client.force_login(owner)  # a manager of the team
    response = client.get("/spend/")
    html = response.content.decode()
    box = html.split('id="possibly-billed-total"')[1].split("</div>")[0]
    assert "$0.12" in box
    assert response.context["totals"].real == D("0")  # not spend: not charged (yet)
    (studio,) = response.context["by_team"]
    assert (studio["label"], studio["real"], studio["possibly_billed"]) == (
        "Studio",
        D("0"),
        D("0.12"),
    )
    budget = re.search(rf'id="budget-{team.pk}">.*?</div>\s*</div>', html, re.S).group(0)
    assert "possibly billed $0.12" in budget
    assert f'href="/jobs/{job.pk}/"' in html.split('id="possibly-billed"')[1]


def test_the_csv_has_the_possibly_billed_row(client, priced, owner):
    job = possibly_billed(priced)
    client.force_login(owner)
    body = b"".join(client.get("/spend/export.csv").streaming_content).decode()
    header, *rows = list(csv.reader(io.StringIO(body)))
    assert "kind" in header
    (row,) = rows
    line = dict(zip(header, row, strict=True))
    assert (line["kind"], line["job"], line["amount_usd"]) == (
        "possibly_billed",
        str(job.pk),
        "0.1200",
    )


# --- resolution in the admin ------------------------------------------------------------


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_superuser("root", "root@example.com", "pw-12345")


def resolve_url(job) -> str:
    return f"/admin/jobs/job/{job.pk}/resolve-billing/"


def test_the_admin_lists_and_filters_possibly_billed_jobs(client, priced, staff):
    job = possibly_billed(priced)
    client.force_login(staff)
    listing = client.get("/admin/jobs/job/?billing_status__exact=possibly_billed")
    assert listing.status_code == 200
    assert list(listing.context["cl"].result_list) == [job]
    change = client.get(f"/admin/jobs/job/{job.pk}/change/").content.decode()
    assert resolve_url(job) in change
    form = client.get(resolve_url(job))
    assert form.status_code == 200 and "$0.12" in form.content.decode()


def test_resolving_as_charged_writes_one_charge_and_one_release(client, priced, staff, owner):
    job = possibly_billed(priced)
    client.force_login(staff)
    data = {"decision": "charged", "reason": "On APIXO's invoice for May."}
    response = client.post(resolve_url(job), data)
    assert response.status_code == 302
    assert client.post(resolve_url(job), data).status_code == 302  # twice: nothing more
    assert entries(job) == [
        ("hold", D("0.1200")),
        ("charge", D("0.1200")),
        ("release", D("0.1200")),
    ]
    job.refresh_from_db()
    assert job.billing_status == "charged" and job.billing_resolved_by == staff
    assert job.billing_resolution == "On APIXO's invoice for May."
    assert job.billing_resolved_at is not None
    assert job.events.filter(detail__contains="Reason: On APIXO's invoice for May.").count() == 1
    use = ledger.usage(job.team)
    assert (use.spent, use.held) == (D("0.12"), D("0"))
    client.force_login(owner)
    cost = client.get(f"/jobs/{job.pk}/").content.decode().split('id="cost"')[1]
    cost = cost.split("</section>")[0]
    assert "charged $0.12" in cost and "On APIXO&#x27;s invoice for May." in cost
    assert NOTICE not in cost


def test_resolving_as_not_billed_releases_the_hold(client, priced, staff):
    job = possibly_billed(priced)
    client.force_login(staff)
    data = {"decision": "not_billed", "reason": "Not on the invoice."}
    assert client.post(resolve_url(job), data).status_code == 302
    assert client.post(resolve_url(job), {**data, "decision": "charged"}).status_code == 302
    assert released(job)
    job.refresh_from_db()
    assert job.billing_status == "not_billed"


def test_an_admin_may_charge_another_amount(client, priced, staff):
    job = possibly_billed(priced)
    client.force_login(staff)
    refused = client.post(resolve_url(job), {"decision": "charged", "amount": "-1", "reason": "x"})
    assert refused.status_code == 200 and hold_is_open(job)
    data = {"decision": "charged", "amount": "0.05", "reason": "Billed at the old price."}
    assert client.post(resolve_url(job), data).status_code == 302
    charge = job.ledger.get(kind="charge")
    assert charge.amount == D("0.05") and charge.price_book is None


def test_a_reason_is_required(client, priced, staff):
    job = possibly_billed(priced)
    client.force_login(staff)
    response = client.post(resolve_url(job), {"decision": "not_billed", "reason": "  "})
    assert response.status_code == 200
    assert "This field is required" in response.content.decode()
    assert hold_is_open(job)
    job.refresh_from_db()
    assert job.billing_status == "possibly_billed"


def test_members_cannot_resolve(client, priced, owner):
    job = possibly_billed(priced)
    client.force_login(owner)  # a manager of the job's team, not staff
    response = client.post(resolve_url(job), {"decision": "not_billed", "reason": "mine"})
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    assert hold_is_open(job)


def test_staff_without_the_change_permission_cannot_resolve(client, priced):
    job = possibly_billed(priced)
    viewer = get_user_model().objects.create_user("viewer", password="pw-12345", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_job"))
    client.force_login(viewer)
    response = client.post(resolve_url(job), {"decision": "not_billed", "reason": "x"})
    assert response.status_code == 403
    assert hold_is_open(job)


def test_billing_fields_cannot_be_edited_by_hand(client, priced, staff):
    job = possibly_billed(priced)
    client.force_login(staff)
    form = client.get(f"/admin/jobs/job/{job.pk}/change/").context["adminform"].form
    assert not {"billing_status", "billing_resolved_by", "billing_resolution"} & set(form.fields)
