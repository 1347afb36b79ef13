"""Files that expire, in Chromium at a desktop and a phone size: an expired job's page says
what happened instead of showing broken images, its history row shows a placeholder, the
spend page shows each team's stored bytes, and the admin index has its status box. No
page breaks the Content-Security-Policy. Screenshots: test-artifacts/retention-*.png."""

import uuid

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import leave_team, shot, sign_in
from tests.e2e.test_security_browser import VIEWPORTS, WATCHER

pytestmark = pytest.mark.e2e

# Two jobs of a team of its own, run in-process (Conf.SYNC): one finished 31 days ago,
# whose files the purge then deletes, and one that keeps its files.
SEED = """
import datetime
from django.contrib.auth import get_user_model
from django.db.models import F
from django.utils import timezone
from django_q.conf import Conf
from billing.models import Membership, Team
from jobs import intake, retention
from jobs.models import Job, JobEvent
from tests.images import upload

Conf.SYNC = True
user = get_user_model().objects.get(username="e2e-user")
team = Team.objects.create(name="Retention {tag}")
Membership.objects.create(team=team, user=user, role="manager")
ids = []
for name in ("old-{tag}.png", "new-{tag}.png"):
    (job,) = intake.submit_uploads(
        user=user, team=team, files=[upload(name, width=640, height=480)],
        choices=[("local", {{"scale": 2}})],
    )
    ids.append(job.pk)
# The first job ran 31 days ago: every time it has moves back together.
back = datetime.timedelta(days=31)
Job.objects.filter(pk=ids[0]).update(
    created_at=F("created_at") - back, submitted_at=F("submitted_at") - back,
    finished_at=F("finished_at") - back,
)
JobEvent.objects.filter(job_id=ids[0]).update(at=F("at") - back)
report = retention.purge(timezone.now())
assert report.jobs == 1, report
kept = Job.objects.get(pk=ids[1])
assert kept.state == "succeeded", kept.state
print(team.pk, ids[0], ids[1])
"""


@pytest.fixture(scope="module")
def seeded(portal):
    tag = uuid.uuid4().hex[:8]
    out = portal.manage("shell", "-c", SEED.format(tag=tag)).stdout.strip().splitlines()[-1]
    team_id, expired, kept = (int(n) for n in out.split())
    yield team_id, expired, kept
    leave_team(portal, team_id)


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_an_expired_job_and_the_stored_bytes_in_the_browser(browser, portal, seeded, viewport):
    team_id, expired, kept = seeded
    context = browser.new_context(viewport=VIEWPORTS[viewport], base_url=portal.url)
    context.add_init_script(WATCHER)
    page = context.new_page()
    refused = []
    page.on(
        "console",
        lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None,
    )
    try:
        sign_in(page)

        page.goto(f"/jobs/{expired}/")
        expect(page.locator("#files-expired")).to_contain_text(
            "were deleted on", use_inner_text=True
        )
        expect(page.locator("#files-expired")).to_contain_text("after 31 days")
        expect(page.locator("img-comparison-slider")).to_have_count(0)
        expect(page.get_by_role("link", name="Download result")).to_have_count(0)
        expect(page.locator("#cost")).to_be_visible()
        shot(page, f"retention-{viewport}-expired-job")

        page.goto(f"/jobs/{kept}/")
        expect(page.locator("img-comparison-slider")).to_have_count(1)
        expect(page.get_by_role("link", name="Download result")).to_be_visible()

        page.goto("/jobs/")
        expect(page.locator(f"#job-{expired} .thumb-gone")).to_have_text("files deleted")
        expect(page.locator(f"#job-{kept} td.thumb img")).to_be_visible()
        shot(page, f"retention-{viewport}-history")

        page.goto("/spend/")
        expect(page.locator(f"#stored-{team_id}")).to_contain_text("stored, files kept 30 days")
        shot(page, f"retention-{viewport}-spend")

        page.goto("/admin/")
        expect(page.locator("#status-box")).to_contain_text("Portal status")
        expect(page.locator("#status-box")).to_contain_text("Last purge")
        shot(page, f"retention-{viewport}-admin-index")

        seen = page.evaluate("() => window.__cspSeen || []") + refused
        assert not seen, seen
    finally:
        context.close()
