"""The spend review in Chromium: a staff user opens Spend, the daily chart is drawn by
the vendored Chart.js, and it is drawn again when the filter swaps the report."""

import re
import uuid

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import shot, sign_in

pytestmark = pytest.mark.e2e

# Charges for a team of its own (the e2e user is staff and sees every team), so no other
# test's budget or totals move. Spread over this month's days up to today.
SEED = """
import datetime
from decimal import Decimal
from django.utils import timezone
from billing.ledger import month_start
from billing.models import LedgerEntry, PriceBook, Team
from django.contrib.auth import get_user_model

team = Team.objects.create(name="Spend demo {tag}", monthly_budget=Decimal("5.00"))
user = get_user_model().objects.get(username="e2e-user")
now, start = timezone.now(), month_start()
rows = [
    (0, "pixazo", "0.12", False), (0, "apixo", "0.01", False), (2, "pixazo", "0.23", False),
    (3, "fal", "0.032", False), (5, "pixazo", "0.45", False), (5, "apixo", "0.01", False),
    (6, "fal", "0.016", False), (1, "apixo", "0.01", True), (4, "pixazo", "0.12", True),
]
for n, (back, provider, amount, sandbox) in enumerate(rows):
    LedgerEntry.objects.create(
        team=team, user=user, kind="charge", provider=provider, amount=Decimal(amount),
        sandbox=sandbox,
        price_book=PriceBook.objects.filter(provider=provider).first(),
        explanation=f"seeded for the spend review test ({{provider}})",
        idempotency_key=f"e2e-spend-{tag}-{{n}}",
        created_at=max(start, now - datetime.timedelta(days=back)),
    )
print(team.pk)
"""

DATASETS = "c => { const ch = window.Chart.getChart(c); return ch ? ch.data.datasets.length : 0; }"


def test_staff_review_spend_with_a_chart(page, portal):
    tag = uuid.uuid4().hex[:8]
    team_id = portal.manage("shell", "-c", SEED.format(tag=tag)).stdout.strip().splitlines()[-1]

    sign_in(page)
    page.get_by_role("link", name="Spend", exact=True).click()
    page.wait_for_url("**/spend/")
    expect(page.get_by_role("heading", name="Spend", exact=True)).to_be_visible()
    expect(page.locator(f"#budget-{team_id}")).to_contain_text("of $5.00")
    expect(page.locator(f"#budget-{team_id} meter.meter")).to_be_visible()

    canvas = page.locator("#spend-chart")
    expect(canvas).to_be_visible()
    page.wait_for_function(
        "() => { const c = document.getElementById('spend-chart');"
        " const ch = window.Chart && window.Chart.getChart(c);"
        " return ch && ch.data.datasets.length > 0; }"
    )
    labels = canvas.evaluate(
        "c => window.Chart.getChart(c).data.datasets.map(d => d.label + '/' + d.stack)"
    )
    assert {"Pixazo Crystal/real", "APIXO/real", "fal.ai Crystal/real"} <= set(labels)
    assert not any(label.endswith("/sandbox") for label in labels)
    assert canvas.evaluate("c => window.Chart.getChart(c).config.type") == "bar"
    assert canvas.evaluate("c => window.Chart.getChart(c).options.scales.x.stacked") is True
    assert canvas.bounding_box()["height"] > 200

    # Only this team: the filter swaps the report in place (no reload) and the chart is
    # drawn again on the new canvas.
    page.evaluate("window.__marker = 1")
    page.locator("#id_team").select_option(team_id)
    expect(page).to_have_url(re.compile(rf"team={team_id}"))
    expect(page.locator("#real-total")).to_have_text("$0.868")
    expect(page.locator("#sandbox-total")).to_have_text("$0.13")
    page.get_by_label("Include sandbox jobs (not billed)").check()
    expect(page).to_have_url(re.compile(r"include_sandbox=on"))
    page.wait_for_function(
        "() => { const ch = window.Chart.getChart(document.getElementById('spend-chart'));"
        " return ch && ch.data.datasets.some(d => d.stack === 'sandbox'); }"
    )
    assert page.locator("#spend-chart").evaluate(DATASETS) == 5  # 3 real + 2 sandbox
    expect(page.locator("#real-total")).to_have_text("$0.868")  # sandbox never mixed in
    expect(page.locator("#by-team")).to_contain_text(f"Spend demo {tag}")
    expect(page.locator("table.charges tbody tr")).to_have_count(9)
    expect(page.locator("#export")).to_have_attribute("href", re.compile(r"include_sandbox=on"))
    assert page.evaluate("window.__marker") == 1, "the page reloaded"
    shot(page, "spend")
