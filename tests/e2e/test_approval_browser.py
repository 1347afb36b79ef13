"""Fit to budget and approval above a limit in Chromium (issue #12): a manager sets an
approval limit on the team page, the upload page says what fits the budget, a submission
above the limit waits ("Awaiting approval") and is approved on the spend page. Screenshots
of the fit block and the spend page's section at 1280 and 390 px land in test-artifacts/."""

import uuid

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import assert_fits, leave_team, shot, sign_in
from tests.images import image_bytes

pytestmark = pytest.mark.e2e

# A team of its own (the e2e user manages it), and Local priced at $0.50 an image for the
# test (real spend that runs on the worker); a later free version restores it after.
SEED = """
from decimal import Decimal
from django.contrib.auth import get_user_model
from django.db.models import Max
from django.utils import timezone
from billing.models import Membership, PriceBook, Team

team = Team.objects.create(name="Approvals {tag}", monthly_budget=Decimal("1.20"))
user = get_user_model().objects.get(username="e2e-user")
Membership.objects.create(team=team, user=user, role="manager")
version = PriceBook.objects.filter(provider="local").aggregate(v=Max("version"))["v"] + 1
PriceBook.objects.create(provider="local", version=version, effective_from=timezone.now(),
                         rule={rule})
print(team.pk)
"""
# Afterwards Local is free again.
RESTORE = """
from django.db.models import Max
from django.utils import timezone
from billing.models import PriceBook

version = PriceBook.objects.filter(provider="local").aggregate(v=Max("version"))["v"] + 1
PriceBook.objects.create(provider="local", version=version, effective_from=timezone.now(),
                         rule={"kind": "free"})
"""
PRICED = '{"kind": "flat", "price": "0.50"}'


def images(n):
    return [
        {
            "name": f"shot{i}.png",
            "mimeType": "image/png",
            "buffer": image_bytes(120, 90, unique=True),
        }
        for i in range(n)
    ]


def test_a_submission_above_the_limit_waits_and_a_manager_approves_it(portal, page):
    tag = uuid.uuid4().hex[:6]
    out = portal.manage("shell", "-c", SEED.format(tag=tag, rule=PRICED)).stdout
    team_id = int(out.split()[-1])
    try:
        sign_in(page)
        page.goto(f"/teams/{team_id}/")
        page.get_by_label("Approval needed above, USD").fill("0.75")
        page.get_by_role("button", name="Save limit").click()
        expect(page.locator("#budget .alert.ok")).to_have_text(
            "Submissions quoted above $0.75 now wait for a manager's approval."
        )

        page.goto("/")
        page.locator('select[name="team"]').select_option(str(team_id))
        page.set_input_files("#images", images(2))
        fit = page.locator("#fit")
        expect(fit).to_contain_text("$1.20 left.")
        expect(fit).to_contain_text("All 2 images fit at ")
        expect(fit).to_contain_text("Local (Pillow) 4x ($1.00)")
        page.set_viewport_size({"width": 390, "height": 844})
        expect(fit).to_be_visible()
        shot(page, "fit-block-390")
        assert_fits(page, 390)
        page.set_viewport_size({"width": 1280, "height": 900})
        fit.scroll_into_view_if_needed()
        shot(page, "fit-block-1280")

        page.get_by_role("button", name="Use Local (Pillow) 3x").click()
        expect(page.locator('select[name="local-scale"]')).to_have_value("3")
        page.locator("#submit-button").click()
        expect(page.locator("#outcome")).to_contain_text("Awaiting approval")

        page.goto("/spend/")
        section = page.locator("#approvals")
        expect(section).to_contain_text("2 jobs by e2e-user in Approvals")
        section.scroll_into_view_if_needed()
        shot(page, "approvals-1280")
        page.set_viewport_size({"width": 390, "height": 844})
        page.reload()
        shot(page, "approvals-390")
        assert_fits(page, 390)

        page.locator(f"#approvals article:has-text('Approvals {tag}')").get_by_role(
            "button", name="Approve"
        ).click()
        expect(section).to_contain_text("Approved: 2 jobs queued for the providers.")
        page.goto("/jobs/")
        expect(page.locator("tr.job-row").first).not_to_contain_text("Awaiting approval")
    finally:
        portal.manage("shell", "-c", RESTORE)
        leave_team(portal, team_id)
