"""Issue #11 items 1, 7, 8, 11 in Chromium, on real `manage.py serve` portals: the spend
page's "show them" link leaves the filter showing sandbox rows, the compare page shows
two sandboxes' labelled results, and a portal started with a PUBLIC_BASE_URL that does
not answer says so on /providers/."""

import re
import time
import uuid

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import Portal, assert_fits, free_port, shot, sign_in
from tests.e2e.test_spend_browser import SEED
from tests.images import image_bytes

pytestmark = pytest.mark.e2e

NARROW = {"width": 390, "height": 844}


def narrow_shot(page, name: str):
    page.set_viewport_size(NARROW)
    assert_fits(page, 390)
    shot(page, name)


def test_show_them_ticks_include_sandbox_and_the_next_filter_keeps_them(page, portal):
    tag = uuid.uuid4().hex[:8]
    team_id = portal.manage("shell", "-c", SEED.format(tag=tag)).stdout.strip().splitlines()[-1]
    sign_in(page)
    page.goto(f"/spend/?team={team_id}")
    box = page.get_by_label("Include sandbox jobs (not billed)")
    expect(box).not_to_be_checked()
    page.locator("#show-sandbox").click()
    expect(page).to_have_url(re.compile(r"include_sandbox=on"))
    expect(box).to_be_checked()
    charges = page.locator("table.charges tbody tr")
    expect(charges).to_have_count(9)
    # The next filter keeps them: the form says what the page shows.
    page.locator("#id_provider").select_option("pixazo")
    expect(page).to_have_url(re.compile(r"provider=pixazo.*include_sandbox=on"))
    expect(charges).to_have_count(4)  # 3 real + 1 sandbox Pixazo Crystal
    expect(page.locator("table.charges")).to_contain_text("Pixazo Crystal")
    expect(page.locator("table.charges")).to_contain_text("sandbox - not billed")
    expect(page.locator("#real-total")).to_have_text("$0.80")
    shot(page, "words-spend-sandbox")
    narrow_shot(page, "words-spend-sandbox-390")


def test_the_compare_page_shows_two_labelled_sandbox_results(page):
    sign_in(page)
    name = f"pair-{uuid.uuid4().hex[:8]}.png"
    page.set_input_files(
        "#images",
        [{"name": name, "mimeType": "image/png", "buffer": image_bytes(240, 180, unique=True)}],
    )
    page.locator('input[name="provider"][value="local"]').uncheck()
    page.locator('input[name="provider"][value="ximilar"]').check()
    page.locator('input[name="provider"][value="pixazo"]').check()
    page.get_by_role("button", name="Upscale").click()
    rows = page.locator("#outcome tr.job-row")
    expect(rows).to_have_count(2)
    for row in rows.all():
        expect(row).to_have_class(re.compile(r"\bstate-succeeded\b"), timeout=45_000)
    page.get_by_role("link", name="compare the providers side by side").click()
    page.wait_for_url(re.compile(r"/compare/$"))
    page.wait_for_function(
        "() => [...document.querySelectorAll('.compare-grid img')]"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )
    shot(page, "words-compare-sandboxes")
    narrow_shot(page, "words-compare-sandboxes-390")


def test_a_portal_with_a_wrong_public_base_url_warns_on_providers(browser, tmp_path):
    wrong = f"http://127.0.0.1:{free_port()}"
    other = Portal(tmp_path)
    other.env["PUBLIC_BASE_URL"] = wrong
    other.env["ALLOWED_HOSTS"] = "127.0.0.1,localhost"
    other.start()
    try:
        deadline = time.monotonic() + 30
        line = f"PUBLIC_BASE_URL {wrong} does not answer"
        while line not in other.log_path.read_text():
            assert time.monotonic() < deadline, other.log_path.read_text()
            time.sleep(0.2)  # waiting for the start-up check's line, not timing it
        context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=other.url)
        page = context.new_page()
        sign_in(page)
        page.goto("/providers/")
        banner = page.locator("#unreachable")
        expect(banner).to_contain_text("Sandbox jobs and webhooks will fail")
        expect(banner).to_contain_text(f"PUBLIC_BASE_URL ({wrong}/healthz/live)")
        expect(banner).to_contain_text("Checked when the portal started")
        shot(page, "words-providers-warning")
        narrow_shot(page, "words-providers-warning-390")
        context.close()
    finally:
        other.stop()
