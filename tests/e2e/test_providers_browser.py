"""Two providers for one image, in Chromium: the preview before submit, both jobs
finishing live, and the compare page."""

import re
import uuid

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import shot, sign_in
from tests.images import image_bytes

pytestmark = pytest.mark.e2e


def test_a_user_compares_two_providers_on_one_image(page):
    sign_in(page)
    name = f"duo-{uuid.uuid4().hex[:8]}.png"
    page.set_input_files(
        "#images",
        [{"name": name, "mimeType": "image/png", "buffer": image_bytes(200, 150, unique=True)}],
    )
    page.locator('input[name="provider"][value="local"]').uncheck()
    page.locator('input[name="provider"][value="ximilar"]').check()
    page.locator('select[name="ximilar-scale"]').select_option("4")
    page.locator('input[name="provider"][value="apixo"]').check()
    page.locator('select[name="apixo-resolution"]').select_option("2k")

    # Before submitting, the page says what each provider will make of the image.
    preview = page.locator("#preview")
    expect(preview).to_contain_text("800×600")  # Ximilar 4x
    expect(preview).to_contain_text("2048×1536")  # APIXO 2k long edge
    shot(page, "upload-preview")

    page.get_by_role("button", name="Upscale").click()
    outcome = page.locator("#outcome")
    expect(outcome.locator(".alert.ok")).to_contain_text("2 jobs queued")
    rows = outcome.locator("tr.job-row")
    expect(rows).to_have_count(2)
    for row in rows.all():
        expect(row).to_have_class(re.compile(r"\bstate-succeeded\b"), timeout=45_000)

    outcome.get_by_role("link", name="compare the providers side by side").click()
    page.wait_for_url(re.compile(r"/jobs/batch/[0-9a-f-]+/compare/$"))
    tiles = page.locator(".compare-grid figure.tile")
    expect(tiles).to_have_count(3)  # the original and two results
    expect(page.locator(".compare-grid")).to_contain_text("Ximilar")
    expect(page.locator(".compare-grid")).to_contain_text("APIXO")
    expect(page.locator(".compare-grid")).to_contain_text("800×600")
    expect(page.locator(".compare-grid")).to_contain_text("2048×1536")
    expect(page.locator(".compare-grid")).to_contain_text("$0.01")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.compare-grid img')]"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )
    shot(page, "compare")


def test_the_providers_page_shows_all_providers(page):
    sign_in(page)
    page.get_by_role("link", name="Providers", exact=True).click()
    for slug in ("local", "pixazo", "pixelcut", "fal", "ximilar", "apixo"):
        expect(page.locator(f"#provider-{slug}")).to_be_visible()
    expect(page.locator("#provider-apixo")).to_contain_text("sandbox")
    shot(page, "providers")


def test_a_provider_failure_is_explained_on_the_job_page(page, portal):
    # Switch a fault on in the running portal's sandbox, as an admin would for a demo.
    portal.manage(
        "shell",
        "-c",
        "from jobs.sandbox.engine import set_faults; "
        "set_faults('apixo', task_failure='SensitiveContent')",
    )
    try:
        sign_in(page)
        name = f"refused-{uuid.uuid4().hex[:8]}.png"
        page.set_input_files(
            "#images",
            [{"name": name, "mimeType": "image/png", "buffer": image_bytes(120, 90, unique=True)}],
        )
        page.locator('input[name="provider"][value="local"]').uncheck()
        page.locator('input[name="provider"][value="apixo"]').check()
        page.get_by_role("button", name="Upscale").click()
        row = page.locator("#outcome tr.job-row")
        expect(row).to_have_class(re.compile(r"\bstate-failed\b"), timeout=45_000)
        expect(row).to_contain_text("safety check")
        row.get_by_role("link", name=name).click()
        alert = page.locator(".alert.error")
        expect(alert).to_contain_text("This job failed.")
        expect(alert).to_contain_text("SensitiveContent")
        expect(page.locator(".timeline")).to_contain_text("Failed")
        shot(page, "job-failed")
    finally:
        portal.manage(
            "shell", "-c", "from jobs.sandbox.engine import set_faults; set_faults('apixo')"
        )
