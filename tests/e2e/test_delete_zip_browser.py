"""Delete and ZIP in Chromium: tick rows in History (one of them still running: its box
stays ticked through the row's live updates), download them as one ZIP, then delete
one job's files from its page. Screenshots at 1280 and 390 px:
test-artifacts/delete-zip-*.png."""

import io
import re
import uuid
import zipfile

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import assert_fits, leave_team, shot, sign_in
from tests.e2e.test_security_browser import VIEWPORTS, WATCHER, poll_answered

pytestmark = pytest.mark.e2e

# A team of its own with one submission of two images, each to local (done at once) and
# to the fal sandbox (made slow: still running when the page opens). The cluster of
# `manage.py serve` runs them.
SEED = """
from django.contrib.auth import get_user_model
from billing.models import Membership, Team
from jobs import intake
from jobs.sandbox.engine import set_faults
from tests.images import upload

set_faults("fal", latency=5)
user = get_user_model().objects.get(username="e2e-user")
team = Team.objects.create(name="Zip {tag}")
Membership.objects.create(team=team, user=user, role="manager")
jobs = intake.submit_uploads(
    user=user, team=team,
    files=[
        upload("sea-{tag}.png", width=160, height=120),
        upload("sky-{tag}.png", width=96, height=96),
    ],
    choices=[("local", {{"scale": 2}}), ("fal", {{}})],
)
print(team.pk, jobs[0].batch, " ".join(f"{{j.provider}}:{{j.pk}}" for j in jobs))
"""


@pytest.fixture(scope="module")
def seeded(portal):
    tag = uuid.uuid4().hex[:8]
    out = portal.manage("shell", "-c", SEED.format(tag=tag)).stdout.strip().splitlines()[-1]
    team, batch, *jobs = out.split()
    yield tag, int(team), batch, [(p, int(n)) for p, n in (j.split(":") for j in jobs)]
    portal.manage("shell", "-c", "from jobs.sandbox.engine import set_faults; set_faults('fal')")
    leave_team(portal, int(team))


def test_select_download_a_zip_and_delete_one_jobs_files(browser, portal, seeded, tmp_path):
    tag, team, batch, jobs = seeded
    local = [pk for provider, pk in jobs if provider == "local"]
    fal = [pk for provider, pk in jobs if provider == "fal"]
    context = browser.new_context(
        viewport=VIEWPORTS["desktop"], base_url=portal.url, accept_downloads=True
    )
    context.add_init_script(WATCHER)
    page = context.new_page()
    try:
        sign_in(page)
        page.goto(f"/jobs/?team={team}")
        running = page.locator(f"#job-{fal[0]}")
        expect(running).to_have_class(re.compile("state-(queued|submitting|running)"))
        page.locator(f"#pick-{fal[0]}").check()
        page.locator(f"#pick-{local[0]}").check()
        button = page.locator("#zip-selected")
        expect(button).to_have_text("Download 1 result as ZIP")
        expect(page.locator("#zip-selected-note")).to_have_text(
            "1 selected job has no result and is left out."
        )
        # The running row re-renders itself every 2 s: its box stays ticked throughout.
        poll_answered(page, rf"/jobs/{fal[0]}/row/$")
        expect(page.locator(f"#pick-{fal[0]}")).to_be_checked()
        expect(running).to_have_class(re.compile("state-succeeded"), timeout=30_000)
        expect(page.locator(f"#pick-{fal[0]}")).to_be_checked()
        expect(button).to_have_text("Download 2 results as ZIP")
        expect(page.locator("#zip-selected-note")).to_have_text("")
        shot(page, "delete-zip-history-selection-1280")
        page.set_viewport_size(VIEWPORTS["phone"])
        expect(page.locator(f"#pick-{fal[0]}")).to_be_visible()
        shot(page, "delete-zip-history-selection-390")
        assert_fits(page, 390)
        page.set_viewport_size(VIEWPORTS["desktop"])

        with page.expect_download() as download:
            button.click()
        path = tmp_path / "results.zip"
        download.value.save_as(path)
        with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as archive:
            assert archive.testzip() is None
            names = sorted(archive.namelist())
        assert len(names) == 2
        assert names[0].startswith(f"sea-{tag}-fal-") and names[1].startswith(f"sea-{tag}-local-")

        # Delete the local result's files from its page, confirming in place (htmx).
        page.goto(f"/jobs/{local[0]}/")
        page.get_by_role("link", name="Delete files…").click()
        confirm = page.locator("#delete-confirm")
        expect(confirm).to_contain_text(f"Delete the files of sea-{tag}.png")
        shot(page, "delete-zip-confirm-1280")
        page.set_viewport_size(VIEWPORTS["phone"])
        assert_fits(page, 390)
        shot(page, "delete-zip-confirm-390")
        page.set_viewport_size(VIEWPORTS["desktop"])
        confirm.get_by_role("button", name="Delete files").click()
        page.wait_for_url(f"**/jobs/{local[0]}/")
        note = page.locator("#files-expired")
        expect(note).to_contain_text(re.compile(r"Files deleted by e2e-user on \d{4}-\d\d-\d\d\."))
        expect(page.locator("#cost")).to_be_visible()
        expect(page.get_by_role("link", name="Download result")).to_have_count(0)
        expect(page.locator("#timeline, .timeline")).to_contain_text("Files deleted by e2e-user")
        shot(page, "delete-zip-deleted-job-1280")
        page.set_viewport_size(VIEWPORTS["phone"])
        assert_fits(page, 390)
        shot(page, "delete-zip-deleted-job-390")

        page.goto(f"/jobs/?team={team}")
        expect(page.locator(f"#job-{local[0]}")).to_contain_text("Files deleted by e2e-user")
        assert_fits(page, 390)
        shot(page, "delete-zip-history-deleted-390")

        # The compare page: its ZIP link counts what is left, the deleted tile says why.
        page.goto(f"/jobs/batch/{batch}/compare/")
        expect(page.locator("#batch-zip")).to_have_text("Download 3 results as ZIP")
        expect(page.locator(f"#tile-{local[0]}")).to_contain_text("Files deleted by e2e-user")
        assert_fits(page, 390)
        shot(page, "delete-zip-compare-390")
        page.set_viewport_size(VIEWPORTS["desktop"])
        shot(page, "delete-zip-compare-1280")
        assert page.evaluate("window.__cspSeen") == []
    finally:
        context.close()
