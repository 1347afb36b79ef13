"""History shows new jobs live; "Run again" refuses at the form; HEAD on a download.
Real portal, real Chromium (and real HTTP for HEAD)."""

import re
import uuid

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import USER, assert_fits, shot, sign_in
from tests.images import image_bytes

pytestmark = pytest.mark.e2e

PHONE = {"width": 390, "height": 844}
SUCCEEDED = re.compile(r"\bstate-succeeded\b")


def upscale(portal, tmp_path, name: str, *extra) -> str:
    """A job made by `manage.py upscale` (another process, as a script would); its id."""
    path = tmp_path / name
    path.write_bytes(image_bytes(120, 90, unique=True))
    out = portal.manage("upscale", str(path), "--user", USER, *extra).stdout
    return re.search(r"job (\d+)", out).group(1)


def test_history_shows_a_new_job_without_a_reload(page, portal, tmp_path):
    sign_in(page)
    page.goto("/jobs/")
    page.evaluate("window.__marker = 1")  # gone if anything reloads the page
    name = f"live-{uuid.uuid4().hex[:8]}.png"

    upscale(portal, tmp_path, name)

    row = page.locator("tr.job-row", has=page.get_by_role("link", name=name, exact=True))
    expect(row).to_be_visible(timeout=15_000)
    expect(row).to_have_class(SUCCEEDED, timeout=30_000)  # then its own polling finishes it
    # Several polls have come and gone by now: the job is shown once, at the top.
    expect(row).to_have_count(1)
    expect(page.locator("tr.job-row").first).to_have_id(row.get_attribute("id"))
    assert page.evaluate("window.__marker") == 1
    shot(page, "wide-history-live")


@pytest.fixture(scope="module")
def finished(portal, tmp_path_factory) -> str:
    """A job that has succeeded (its id), for the tests that only look at it."""
    tmp = tmp_path_factory.mktemp("finished")
    return upscale(portal, tmp, f"again-{uuid.uuid4().hex[:8]}.png", "--wait")


def test_run_again_with_no_provider_is_refused_at_the_form(page, finished):
    pk = finished
    sign_in(page)
    page.set_viewport_size(PHONE)
    page.goto(f"/jobs/{pk}/")
    page.evaluate("window.__marker = 1")
    rerun = page.locator("#rerun")
    rerun.locator('input[name="provider"][value="local"]').uncheck()
    rerun.locator('select[name="local-scale"]').select_option("4")

    rerun.get_by_role("button", name="Run again").click()

    error = page.locator("#rerun .alert.error")
    expect(error).to_contain_text("Pick at least one provider.")
    expect(error).to_be_in_viewport()
    assert page.url.endswith(f"/jobs/{pk}/")
    assert page.evaluate("window.__marker") == 1  # only the section changed
    expect(rerun.locator('input[name="provider"]:checked')).to_have_count(0)
    expect(rerun.locator('select[name="local-scale"]')).to_have_value("4")
    assert_fits(page, PHONE["width"])
    shot(page, "phone-rerun-refused")

    # Put right, it starts the new job and goes to its page.
    rerun.locator('input[name="provider"][value="local"]').check()
    rerun.get_by_role("button", name="Run again").click()
    page.wait_for_url(lambda url: re.search(r"/jobs/\d+/$", url) and f"/jobs/{pk}/" not in url)
    expect(page.locator("dl.facts.card")).to_contain_text(f"#{pk}")  # "Run again from #pk"


def test_head_on_a_download_answers_without_a_body(portal, finished):
    pk = finished
    client = portal.signed_in_client()
    try:
        got = client.get(f"/jobs/{pk}/download/")
        head = client.head(f"/jobs/{pk}/download/")
    finally:
        client.close()
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(got.content))
    assert head.headers["content-disposition"] == got.headers["content-disposition"]
