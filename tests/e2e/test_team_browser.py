"""The team page in Chromium: a manager invites someone and changes the budget (htmx swaps
the section and the audit list), the invited person sets a password with the e-mailed
link and signs in; the page fits a phone."""

import re
import uuid

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import leave_team, shot, sign_in

pytestmark = pytest.mark.e2e

# A team of its own with the e2e user as its manager, so no other test's budget moves.
SEED = """
from decimal import Decimal
from django.contrib.auth import get_user_model
from billing.models import Membership, Team

team = Team.objects.create(name="Team page {tag}", monthly_budget=Decimal("50.00"))
user = get_user_model().objects.get(username="e2e-user")
Membership.objects.create(team=team, user=user, role="manager")
print(team.pk)
"""


@pytest.fixture
def own_team(portal):
    tag = uuid.uuid4().hex[:6]
    out = portal.manage("shell", "-c", SEED.format(tag=tag)).stdout
    team_id = int(out.split()[-1])  # the last line: the shell may say more before it
    yield tag, team_id
    leave_team(portal, team_id)


def test_a_manager_invites_someone_and_changes_the_budget(portal, page, own_team):
    tag, team_id = own_team
    email = f"dan-{tag}@example.com"
    sign_in(page)
    page.get_by_role("link", name="Team", exact=True).click()
    page.get_by_role("link", name=f"Team page {tag}").click()
    expect(page.get_by_role("heading", name=f"Team page {tag}")).to_be_visible()

    invite = page.locator("#members form").filter(has=page.get_by_label("E-mail"))
    invite.get_by_label("E-mail").fill(email)
    invite.get_by_role("button", name="Invite").click()
    expect(page.locator("#members .alert.ok")).to_contain_text(
        f"{email} is now a member of Team page {tag}. We e-mailed them a link"
    )
    expect(page.locator(f"#members li.member:has-text('{email}')")).to_contain_text("invited")
    expect(page.locator("#audit")).to_contain_text(f"e2e-user invited {email} as member")

    page.get_by_label("Monthly budget, USD").fill("80")
    page.get_by_role("button", name="Save budget").click()
    expect(page.locator("#budget .alert.ok")).to_have_text("The monthly budget is now $80.00.")
    expect(page.locator("#audit li").first).to_contain_text(
        "e2e-user set the budget from $50.00 to $80.00"
    )
    assert page.url.endswith(f"/teams/{team_id}/")  # swapped in place, no page load
    shot(page, "team-page-1280")

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    shot(page, "team-page-390")
    # The page's own content fits (the top bar is the layout's, checked last, below).
    assert page.evaluate("document.querySelector('main').scrollWidth") <= 390
    page_width = page.evaluate("document.documentElement.scrollWidth")

    # The development mail backend prints the message: the link in it works once.
    links = re.findall(r"http://\S+/accounts/set-password/\S+/", portal.log_path.read_text())
    assert links, "no invitation e-mail in the portal's output"
    page.context.clear_cookies()
    page.goto(links[-1])
    page.get_by_label("New password").fill("dan-new-pass-42")
    page.get_by_label("The same again").fill("dan-new-pass-42")
    page.get_by_role("button", name="Set password").click()
    expect(page.get_by_role("heading", name="Your password is set")).to_be_visible()
    page.get_by_role("link", name="Sign in").click()
    page.get_by_label("User name").fill(email)
    page.get_by_label("Password").fill("dan-new-pass-42")
    page.get_by_role("button", name="Sign in").click()
    page.goto("/teams/")
    expect(page.locator(f"#team-{team_id}")).to_contain_text("member")
    page.context.clear_cookies()
    page.goto(links[-1])
    expect(page.locator(".alert.error")).to_contain_text("This link does not work any more")
    assert page_width <= 390, "the page scrolls sideways at 390 px"
