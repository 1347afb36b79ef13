"""Never pay twice, in Chromium (issue #12): the same image uploaded again with the same
provider and options is quoted "Already done" (the browser hashes it with
crypto.subtle) and, submitted, reuses the result. Screenshots in test-artifacts/."""

import re
import uuid

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import USER, assert_fits, shot, sign_in
from tests.images import image_bytes

pytestmark = pytest.mark.e2e

SUCCEEDED = re.compile(r"\bstate-succeeded\b")


def test_the_same_image_again_is_quoted_already_done_and_reused(page):
    # An image no other test uploads (random pixels): a random size alone collided with
    # another test's gradient of the same size, which was then rightly quoted "Already done".
    name = f"again-{uuid.uuid4().hex[:8]}.png"
    data = image_bytes(120, 90, unique=True)
    image = [{"name": name, "mimeType": "image/png", "buffer": data}]
    sign_in(page)

    page.set_input_files("#images", image)  # local 2x, the page's default
    preview = page.locator("#preview")
    expect(page.locator("#submit-button")).to_have_text("Upscale 1 job · free")
    expect(preview).not_to_contain_text("Already done")
    page.locator("#submit-button").click()
    first = page.locator("#outcome tr.job-row")
    expect(first).to_have_class(SUCCEEDED, timeout=30_000)
    first_id = first.get_attribute("id").removeprefix("job-")

    page.set_input_files("#images", image)
    note = preview.locator(".reuse-note")
    expect(note).to_contain_text("Already done on", timeout=10_000)
    expect(note).to_contain_text(f"by {USER}: reuse it for free, or run again for")
    expect(note.get_by_role("link")).to_have_text(f"job #{first_id}")
    expect(preview.locator(".badge.reused")).to_have_text("reused")
    shot(page, "reuse-preview-1280")

    page.set_viewport_size({"width": 390, "height": 844})
    assert_fits(page, 390)
    shot(page, "reuse-preview-390")
    page.set_viewport_size({"width": 1280, "height": 900})

    page.locator("#submit-button").click()
    second = page.locator("#outcome tr.job-row")
    expect(second).to_have_class(SUCCEEDED)  # at once: nothing to wait for
    badge = second.locator("a.badge.reused")
    expect(badge).to_have_attribute("href", f"/jobs/{first_id}/")
    expect(second).to_contain_text("free — reused")
    shot(page, "reuse-submitted-1280")
