"""Every page fits a 390 px phone: no sideways scroll, Sign out visible, no console
errors. Screenshots of each at 390 and 1280 px: test-artifacts/phone-<page>.png and
wide-<page>.png."""

import json
import re
import uuid

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import USER, assert_fits, shot, sign_in
from tests.images import image_bytes

pytestmark = pytest.mark.e2e

PHONE = {"width": 390, "height": 844}
WIDE = {"width": 1280, "height": 900}

# The pages to check, by name: add new pages here. {tag}, {job}, {failed} and {batch}
# are filled in from the jobs the test makes.
PAGES = {
    "upload": "/",
    "history": "/jobs/",
    "history-filtered": (
        "/jobs/?q={tag}&state=succeeded&provider=local&since=2020-01-01&until=2099-12-31"
    ),
    "history-bad-filter": "/jobs/?q={tag}&since=2026-13-45",
    "job-succeeded": "/jobs/{job}/",
    "job-failed": "/jobs/{failed}/",
    "compare": "/jobs/batch/{batch}/compare/",
    "providers": "/providers/",
    "spend": "/spend/",  # the demo user is staff
    "teams": "/teams/",  # each team's own page: tests/e2e/test_team_browser.py at 390 px
}
SIGNED_OUT_PAGES = {"login": "/accounts/login/"}
# Error pages as production shows them (this portal runs with DEBUG, which shows Django's
# technical pages instead): the template rendered, shown on the portal's origin.
ERROR_PAGES = {"not-found": "404.html"}
SUCCEEDED = re.compile(r"\bstate-succeeded\b")
LONG_ERROR = (
    "The provider refused this image: its safety check flagged the content "
    "(SensitiveContent). Nothing was charged; try another image or provider."
)


def watch_console(page) -> list[str]:
    """Console errors and uncaught exceptions, as "page: message"."""
    errors = []

    def on_console(msg):
        if msg.type != "error":
            return
        errors.append(f"{page.url}: {msg.text} ({msg.location.get('url')})")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))
    return errors


def make_jobs(page, portal) -> tuple[dict, dict]:
    """Two images through two providers (a batch to compare), one of the four jobs then
    failed with a long message; and the error pages' HTML. One `manage.py` call."""
    tag = uuid.uuid4().hex[:8]
    names = [f"harbour-{tag}.png", f"meadow-{tag}-with-a-rather-long-file-name.png"]
    page.goto("/")
    page.set_input_files(
        "#images",
        [
            {"name": n, "mimeType": "image/png", "buffer": image_bytes(120, 90, unique=True)}
            for n in names
        ],
    )
    page.locator('input[name="provider"][value="pixazo"]').check()
    page.get_by_role("button", name="Upscale").click()
    rows = page.locator("#outcome tr.job-row")
    expect(rows).to_have_count(4)
    for i in range(4):
        expect(rows.nth(i)).to_have_class(SUCCEEDED, timeout=45_000)
    job = rows.first.get_attribute("id").removeprefix("job-")
    failed = rows.last.get_attribute("id").removeprefix("job-")
    batch = page.locator("#outcome a[href*='/compare/']").first.get_attribute("href")
    batch = batch.split("/batch/")[1].split("/")[0]
    out = portal.manage(
        "shell",
        "-c",
        "import json; from jobs.models import Job; "
        "from django.template.loader import render_to_string; "
        f"Job.objects.filter(pk={failed}).update(state='failed', "
        f"error_code='provider_refused', error_message={LONG_ERROR!r}); "
        f"print(json.dumps({{t: render_to_string(t) for t in {list(ERROR_PAGES.values())!r}}}))",
    ).stdout
    error_html = json.loads(out.splitlines()[-1])  # after what the shell itself prints
    return {"tag": tag, "job": job, "failed": failed, "batch": batch}, error_html


def check_fits(page, name: str, url: str = "", html: str = ""):
    page.set_viewport_size(PHONE)
    if html:
        page.set_content(html, wait_until="load")
    else:
        page.goto(url)
    shot(page, f"phone-{name}")
    assert_fits(page, PHONE["width"])
    page.set_viewport_size(WIDE)
    shot(page, f"wide-{name}")


def check_sign_out_reachable(page, name: str):
    page.set_viewport_size(PHONE)
    button = page.get_by_role("button", name="Sign out")
    expect(button).to_be_visible()
    box = button.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], f"{name}: {box}"
    expect(button).to_be_in_viewport()
    expect(page.locator(".topbar .who")).to_contain_text(USER)


def test_every_page_fits_a_phone_without_console_errors(page, portal, browser):
    errors = watch_console(page)
    sign_in(page)
    made, error_html = make_jobs(page, portal)

    for name, url in PAGES.items():
        check_fits(page, name, url.format(**made))
        check_sign_out_reachable(page, name)

    signed_out = browser.new_context(base_url=portal.url)
    other = signed_out.new_page()
    errors += watch_console(other)
    for name, url in SIGNED_OUT_PAGES.items():
        check_fits(other, name, url)
    for name, template in ERROR_PAGES.items():
        check_fits(other, name, html=error_html[template])
        expect(other.locator("link[rel=stylesheet]")).to_have_count(1)
        assert other.evaluate("getComputedStyle(document.body).margin") == "0px"  # styled
    signed_out.close()

    assert errors == []
