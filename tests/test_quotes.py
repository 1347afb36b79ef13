"""Quotes where people decide: the upload preview (price, tier, why, a cheaper choice,
every provider's total, the budget), the job page's cost card, the history's Cost
column, the budget banner, and the admin of price books and the ledger."""

import datetime
import itertools
from decimal import Decimal
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing import context, ledger
from billing.models import BudgetWarning, LedgerEntry, PriceBook
from jobs import intake, tasks
from jobs.models import Job
from tests.images import upload

_keys = itertools.count()


def preview(client, query):
    response = client.get("/upload/preview/?" + query)
    assert response.status_code == 200
    return response.content.decode()


def entry(team, kind, amount, sandbox=False, **fields):
    """A ledger row written directly, as billing/ledger.py would."""
    return LedgerEntry.objects.create(
        team=team,
        kind=kind,
        provider="pixazo",
        amount=Decimal(amount),
        sandbox=sandbox,
        idempotency_key=f"test:{next(_keys)}",
        **fields,
    )


def resets():
    return f"{ledger.next_month(ledger.month_start()):%Y-%m-%d}"


def total_row(html, slug):
    return html.split(f'id="total-{slug}"')[1].split("</tr>")[0]


@pytest.fixture
def real_pixazo(settings):
    """Pixazo with a key: not a sandbox, so its quotes count against budgets. Nothing is
    sent to it in these tests (the address is a closed port)."""
    settings.PROVIDER_SETTINGS = {
        **settings.PROVIDER_SETTINGS,
        "pixazo": {"api_key": "k", "base_url": "http://127.0.0.1:9/x"},
    }


@pytest.fixture
def staff_client(client, db):
    staff = get_user_model().objects.create_superuser("root", "root@example.com", "pw-12345")
    client.force_login(staff)
    return client


# --- the upload preview ---------------------------------------------------------------------
def test_the_preview_shows_the_price_its_tier_and_why(owner_client):
    html = preview(owner_client, "size=sq.png|1024|1024|99&provider=pixazo&pixazo-scale=2")
    # The explanation is the one the job will store: the provider as the portal names it.
    assert "2048x2048 output = 4.19 MP: Pixazo Crystal 4-8 MP bracket, $0.12" in html
    assert "<strong>$0.12</strong>" in html
    assert "4-8 MP" in html
    assert "Total for 1 job" in html


def test_the_preview_marks_assumed_prices(owner_client):
    html = preview(owner_client, "size=a.png|500|500|9&provider=pixelcut")
    assert "pixelcut: $0.05 per image".lower() in html.lower()
    line = html.split("<tbody>")[1].split("</tr>")[0]
    assert "assumed price" in line


def test_a_smaller_choice_in_a_cheaper_tier_is_offered(owner_client):
    html = preview(owner_client, "size=a.png|1000|1000|9&provider=pixazo&pixazo-scale=4")
    assert "16.00 MP: Pixazo Crystal 8-16 MP bracket, $0.23" in html
    assert "At 2x: $0.07 (up to 4 MP bracket)" in html

    # Only the best alternative: the largest result that still costs less.
    html = preview(owner_client, "size=a.png|1000|1000|9&provider=pixazo&pixazo-scale=8")
    assert "At 4x: $0.23 (8-16 MP bracket)" in html
    assert html.count('class="hint"') == 1

    # The other options stay as chosen: Ximilar's GAN model is priced as GAN at 4x.
    html = preview(
        owner_client,
        "size=a.png|1000|1000|9&provider=ximilar&ximilar-scale=8&ximilar-model_type=gan",
    )
    assert "At 4x: $0.08 (4-16 MP bracket)" in html


def test_no_hint_when_no_smaller_choice_is_cheaper(owner_client):
    for query in (
        "size=a.png|1000|1000|9&provider=pixazo&pixazo-scale=2",  # nothing smaller
        "size=a.png|100|100|9&provider=pixazo&pixazo-scale=8",  # all in the lowest bracket
        "size=a.png|1000|1000|9&provider=apixo&apixo-resolution=8k",  # flat price
        "size=a.png|1000|1000|9&provider=local&local-scale=4",  # free
    ):
        assert 'class="hint"' not in preview(owner_client, query), query


def test_every_provider_prices_the_same_images(owner_client):
    html = preview(
        owner_client,
        "size=a.png|1000|1000|9&size=b.png|1000|800|9"
        "&provider=local&provider=pixazo&pixazo-scale=4"
        "&fal-scale=4&apixo-resolution=2k",  # panels not picked still count as set
    )
    assert "The same images with each provider" in html
    expected = {
        "local": "free",  # $0.00 reads "free" (issue #11)
        "pixazo": "$0.46",  # 4x: 16 MP and 12.8 MP, both in the 8-16 MP bracket
        "pixelcut": "$0.10",  # flat $0.05 each (assumed)
        "fal": "$0.464",  # 4x: 16 MP + 13 MP (12.8 rounded up) at $0.016
        "ximilar": "$0.04",  # 2x classic: 4 MP and 3.2 MP, $0.02 each (assumed)
        "apixo": "$0.02",  # 2k, flat $0.01 each
    }
    for slug, amount in expected.items():
        row = total_row(html, slug)
        assert f'class="nowrap amount">{amount}<' in row, (slug, row)
    assert "chosen" in total_row(html, "pixazo") and "chosen" in total_row(html, "local")
    assert "chosen" not in total_row(html, "fal")
    assert "assumed price" in total_row(html, "pixelcut")
    assert "assumed price" in total_row(html, "ximilar")
    assert "assumed price" not in total_row(html, "apixo")
    assert "sandbox" in total_row(html, "apixo") and "sandbox" not in total_row(html, "local")
    # The chosen providers' total: local $0.00 x 2 + pixazo $0.23 x 2.
    assert "Total for 4 jobs" in html
    assert 'id="preview-total"><strong>$0.46</strong>' in html


def test_the_provider_table_names_refused_images(owner_client):
    html = preview(owner_client, "size=big.png|2000|2000|9&size=s.png|100|100|9&provider=local")
    pixelcut = total_row(html, "pixelcut")
    assert "$0.10" in pixelcut  # 2x takes up to 3000x3000: both
    html = preview(
        owner_client,
        "size=big.png|2000|2000|9&size=s.png|100|100|9&provider=local&pixelcut-scale=4",
    )
    pixelcut = total_row(html, "pixelcut")
    assert "$0.05" in pixelcut and "cannot take big.png" in pixelcut


def test_the_preview_shows_the_budget_state(owner_client, team):
    team.monthly_budget = Decimal("10")
    team.save()
    entry(team, "charge", "8")
    entry(team, "hold", "0.5")
    entry(team, "charge", "5", sandbox=True)  # sandbox spend never counts
    html = preview(owner_client, f"team={team.pk}")
    assert "Studio</strong> budget: $10.00 a month" in html
    assert "spent $8.00" in html and "held for running jobs $0.50" in html
    assert "left $1.50" in html and f"resets on {resets()} (UTC)" in html
    # The page itself shows it before any image is chosen (and without JavaScript).
    page = owner_client.get("/").content.decode()
    assert "left $1.50" in page


def test_no_budget_no_budget_state(owner_client, team):
    assert "budget-state" not in preview(owner_client, f"team={team.pk}")


def test_the_preview_warns_when_the_total_is_over_what_is_left(owner_client, team, real_pixazo):
    team.monthly_budget = Decimal("0.30")
    team.save()
    entry(team, "charge", "0.10")
    query = f"team={team.pk}&size=a.png|1000|1000|9&provider=pixazo"
    assert "budget-over" not in preview(owner_client, query + "&pixazo-scale=2")  # $0.07
    html = preview(owner_client, query + "&pixazo-scale=4")  # $0.23 > $0.20 left
    assert "Over what is left of the budget." in html
    assert "This submission would cost $0.23" in html and "$0.20 left of $0.30" in html
    assert "would be refused" in html


def test_sandbox_quotes_over_the_budget_are_flagged_but_not_refused(owner_client, team):
    team.monthly_budget = Decimal("0.05")
    team.save()
    html = preview(owner_client, f"team={team.pk}&size=a.png|1000|1000|9&provider=pixazo")
    assert "Over what is left" not in html
    assert "More than what is left of the budget, at real prices." in html
    assert "Sandbox jobs are not charged" in html


def test_the_preview_ignores_a_foreign_or_bad_team(owner_client, team, other_team):
    other_team.monthly_budget = Decimal("99")
    other_team.save()
    assert "budget-state" not in preview(owner_client, f"team={other_team.pk}")
    assert "budget-state" not in preview(owner_client, "team=abc")


def test_an_over_budget_upload_is_refused_with_the_figures(
    owner_client, team, real_pixazo, settings
):
    team.monthly_budget = Decimal("0.05")
    team.save()
    response = owner_client.post(
        "/",
        {"images": [upload("p.png")], "provider": ["pixazo"], "pixazo-scale": "2"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 422
    html = response.content.decode()
    assert "Nothing was uploaded." in html
    assert "monthly budget of $0.05" in html
    assert "spent $0.00" in html and "held for running jobs $0.00" in html
    assert "this submission $0.07" in html and "left $0.05" in html
    assert f"The budget resets on {resets()} (UTC)" in html
    assert Job.objects.count() == 0 and LedgerEntry.objects.count() == 0
    assert not (settings.MEDIA_ROOT / "inputs").exists()


# --- the job page and the history ------------------------------------------------------------
def test_the_job_page_shows_a_charged_jobs_cost(owner_client, make_job, owner, team):
    job = make_job(owner, team, scale=2)
    assert job.state == "succeeded" and job.charge is not None
    html = owner_client.get(f"/jobs/{job.pk}/").content.decode()
    card = html.split('id="cost"')[1].split("</section>")[0]
    assert "Quote" in card and "Charge" in card
    assert "Local (Pillow) is free." in card
    assert card.count("<strong>free</strong>") == 2  # quote and charge
    assert "local v1, effective 2026-01-01" in card
    assert "Free." in card
    assert "would-be" not in card and "assumed price" not in card


def test_the_job_page_shows_a_quoted_sandbox_jobs_cost(owner_client, owner, team):
    with mock.patch.object(tasks, "enqueue_submit"):  # stays queued: quoted, not charged
        (job,) = intake.submit_uploads(
            user=owner,
            team=team,
            files=[upload("q.png", width=1024, height=1024)],
            choices=[("pixazo", {"scale": 2})],
        )
    html = owner_client.get(f"/jobs/{job.pk}/").content.decode()
    card = html.split('id="cost"')[1].split("</section>")[0]
    assert "Sandbox - not billed: what a real provider would have charged." in card
    assert "<strong>$0.12</strong>" in card
    assert "2048x2048 output = 4.19 MP: Pixazo Crystal 4-8 MP bracket, $0.12" in card
    assert "Not yet: charged when the job succeeds" in card
    assert "pixazo v1, effective 2026-01-01" in card
    assert "By output size: up to 4 MP $0.07; 4-8 MP $0.12; 8-16 MP $0.23" in card


def test_the_job_page_marks_an_assumed_price(owner_client, owner, team):
    with mock.patch.object(tasks, "enqueue_submit"):
        (job,) = intake.submit_uploads(
            user=owner, team=team, files=[upload("x.png")], choices=[("ximilar", {})]
        )
    html = owner_client.get(f"/jobs/{job.pk}/").content.decode()
    assert "assumed price" in html.split('id="cost"')[1].split("</section>")[0]


def test_the_history_shows_each_jobs_cost_without_a_query_a_row(
    owner_client, make_job, owner, team
):
    charged = make_job(owner, team)
    with mock.patch.object(tasks, "enqueue_submit"):
        (quoted,) = intake.submit_uploads(
            user=owner, team=team, files=[upload("q.png")], choices=[("pixazo", {})]
        )
    html = owner_client.get("/jobs/").content.decode()
    assert "<th>Cost</th>" in html
    row = html.split(f'id="job-{quoted.pk}"')[1].split("</tr>")[0]
    assert "$0.07" in row and "quoted" in row and "sandbox - not billed" in row
    row = html.split(f'id="job-{charged.pk}"')[1].split("</tr>")[0]
    assert "free" in row and "quoted" not in row

    with CaptureQueriesContext(connection) as few:
        owner_client.get("/jobs/")
    for _ in range(4):
        make_job(owner, team)
    with CaptureQueriesContext(connection) as more:
        owner_client.get("/jobs/")
    assert len(more) == len(few)


# --- the budget banner ----------------------------------------------------------------------
def test_no_banner_under_80_percent(owner_client, team):
    team.monthly_budget = Decimal("10")
    team.save()
    entry(team, "charge", "7.99")
    assert "budget-banners" not in owner_client.get("/jobs/").content.decode()


def test_a_warning_banner_at_80_percent(owner_client, team):
    team.monthly_budget = Decimal("10")
    team.save()
    entry(team, "charge", "8")
    entry(team, "hold", "0.5")
    html = owner_client.get("/jobs/").content.decode()
    banner = html.split('id="budget-banners"')[1].split("</div>\n")[0]
    assert 'class="alert warn"' in banner
    assert (
        "Studio has used 85% of its $10.00 monthly budget (spent $8.00, held $0.50). "
        f"It resets on {resets()} UTC."
    ) in banner


def test_an_error_banner_at_100_percent(owner_client, team):
    team.monthly_budget = Decimal("10")
    team.save()
    entry(team, "charge", "10")
    html = owner_client.get("/").content.decode()
    banner = html.split('id="budget-banners"')[1].split("</div>\n")[0]
    assert 'class="alert error"' in banner
    assert "Studio has used 100% of its $10.00 monthly budget (spent $10.00, held $0.00)" in banner


def test_last_months_spend_and_other_teams_make_no_banner(client, team, outsider, owner):
    team.monthly_budget = Decimal("10")
    team.save()
    old = entry(team, "charge", "10")
    LedgerEntry.objects.filter(pk=old.pk).update(
        created_at=ledger.month_start() - datetime.timedelta(days=2)
    )
    client.force_login(owner)
    assert "budget-banners" not in client.get("/jobs/").content.decode()
    entry(team, "charge", "10")
    client.force_login(outsider)  # not their team
    assert "budget-banners" not in client.get("/jobs/").content.decode()


def test_the_banner_costs_two_queries_a_team(owner, team, other_team, django_assert_num_queries):
    team.monthly_budget = Decimal("10")
    team.save()
    entry(team, "charge", "9")
    with django_assert_num_queries(2):
        (banner,) = context.banners_for(owner)
    assert banner.level == "warn" and banner.team == team


def test_fragments_do_not_compute_the_banner(owner_client, make_job, owner, team):
    job = make_job(owner, team)
    team.monthly_budget = Decimal("10")
    team.save()

    def sums(url):
        with CaptureQueriesContext(connection) as queries:
            owner_client.get(url)
        # The banner's month: summed from the rollups (billing/rollups.py), never the ledger.
        found = [q["sql"] for q in queries if "SUM" in q["sql"]]
        assert not [sql for sql in found if "billing_ledgerentry" in sql]
        return [sql for sql in found if "billing_dailyspend" in sql]

    assert sums(f"/jobs/{job.pk}/row/") == []  # polled every 2 s: no budget sums
    assert len(sums("/jobs/")) == 1  # a page: the team's month, once


# --- the admin ------------------------------------------------------------------------------
def test_a_new_price_book_version_is_added_in_the_admin(staff_client):
    response = staff_client.post(
        "/admin/billing/pricebook/add/",
        {
            "provider": "apixo",
            "version": "",
            "effective_from_0": "2026-02-01",
            "effective_from_1": "00:00:00",
            "rule": '{"kind": "flat", "price": "0.02"}',
            "verified": "on",
            "note": "New price from February",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    book = PriceBook.objects.get(provider="apixo", version=2)  # the last + 1
    assert book.rule == {"kind": "flat", "price": "0.02"} and book.verified
    assert book.effective_from == datetime.datetime(2026, 2, 1, tzinfo=datetime.UTC)


def test_the_admin_refuses_a_rule_that_cannot_price(staff_client):
    response = staff_client.post(
        "/admin/billing/pricebook/add/",
        {
            "provider": "pixazo",
            "effective_from_0": "2026-02-01",
            "effective_from_1": "00:00:00",
            "rule": '{"kind": "brackets", "brackets": [[4000000, "0.07"]]}',
        },
    )
    assert response.status_code == 200
    assert "This rule cannot price an image" in response.content.decode()
    assert not PriceBook.objects.filter(provider="pixazo", version=2).exists()


def test_price_books_are_never_changed_or_deleted_in_the_admin(staff_client):
    book = PriceBook.objects.get(provider="pixazo", version=1)
    page = staff_client.get(f"/admin/billing/pricebook/{book.pk}/change/")
    assert page.status_code == 200  # viewing only
    html = page.content.decode()
    assert 'name="_save"' not in html and "By output size: up to 4 MP $0.07" in html
    edited = {"provider": "pixazo", "version": "1", "rule": '{"kind": "free"}', "note": "x"}
    response = staff_client.post(f"/admin/billing/pricebook/{book.pk}/change/", edited)
    assert response.status_code == 403
    assert staff_client.post(f"/admin/billing/pricebook/{book.pk}/delete/").status_code == 403
    book.refresh_from_db()
    assert book.rule["kind"] == "brackets" and book.note == ""
    assert staff_client.get("/admin/billing/pricebook/").status_code == 200


def test_the_ledger_is_read_only_in_the_admin(staff_client, team):
    row = entry(team, "charge", "0.07", explanation="a charge")
    listing = staff_client.get("/admin/billing/ledgerentry/?kind__exact=charge&sandbox__exact=0")
    assert listing.status_code == 200 and "0.0700" in listing.content.decode()
    assert (
        "?provider=pixazo" in staff_client.get("/admin/billing/ledgerentry/").content.decode()
    )  # the provider filter
    assert staff_client.get("/admin/billing/ledgerentry/add/").status_code == 403
    response = staff_client.post(
        f"/admin/billing/ledgerentry/{row.pk}/change/", {"amount": "0", "kind": "charge"}
    )
    assert response.status_code == 403
    assert staff_client.post(f"/admin/billing/ledgerentry/{row.pk}/delete/").status_code == 403
    page = staff_client.get(f"/admin/billing/ledgerentry/{row.pk}/change/")
    assert page.status_code == 200 and "a charge" in page.content.decode()  # viewing only
    row.refresh_from_db()
    assert row.amount == Decimal("0.07")


def test_budgets_and_warnings_in_the_admin(staff_client, team):
    team.monthly_budget = Decimal("25")
    team.save()
    warning = BudgetWarning.objects.create(
        team=team, period=timezone.now().date().replace(day=1), threshold=80
    )
    assert "25.00" in staff_client.get("/admin/billing/team/").content.decode()
    assert (
        'name="monthly_budget"'
        in staff_client.get(f"/admin/billing/team/{team.pk}/change/").content.decode()
    )
    assert staff_client.get("/admin/billing/budgetwarning/").status_code == 200
    assert staff_client.get("/admin/billing/budgetwarning/add/").status_code == 403
    url = f"/admin/billing/budgetwarning/{warning.pk}/delete/"
    assert staff_client.post(url).status_code == 403


def test_a_new_version_starts_from_the_one_it_replaces(staff_client):
    book = PriceBook.objects.get(provider="fal", version=1)
    listing = staff_client.get("/admin/billing/pricebook/").content.decode()
    assert f"/admin/billing/pricebook/add/?from={book.pk}" in listing
    form = staff_client.get(f"/admin/billing/pricebook/add/?from={book.pk}").content.decode()
    assert '<option value="fal" selected>' in form
    assert "per_mp_ceil" in form and "0.016" in form
    blank = staff_client.get("/admin/billing/pricebook/add/?from=x").content.decode()
    assert ">null</textarea>" not in blank
