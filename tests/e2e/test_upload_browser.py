"""The upload page in Chromium (issue #11): thumbnails, the preview's per-file refusals
and transparency warning, the sticky bar, pasting an image, and saved presets.
Screenshots land in test-artifacts/."""

import base64
import uuid

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import assert_fits, shot, sign_in
from tests.images import image_bytes

pytestmark = pytest.mark.e2e


def files(*specs) -> list[dict]:
    return [{"name": name, "mimeType": mime, "buffer": data} for name, mime, data in specs]


LOGO = ("logo.png", "image/png", image_bytes(200, 160, "PNG", mode="RGBA", unique=True))
NOTES = ("notes.jpg", "image/jpeg", b"just some text, not pixels")
TINY = ("tiny.png", "image/png", image_bytes(40, 30, "PNG", unique=True))


def bar_in_view(page) -> bool:
    box = page.locator(".submit-bar").bounding_box()
    height = page.viewport_size["height"]
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= height


def test_choosing_files_shows_thumbnails_refusals_and_what_the_button_will_do(page):
    sign_in(page)
    page.set_input_files("#images", files(LOGO, NOTES, TINY))
    thumbs = page.locator("#file-list li img.thumb")
    expect(thumbs).to_have_count(3)
    assert thumbs.first.get_attribute("src").startswith("blob:")

    preview = page.locator("#preview")
    # The submit's own refusals, per file, before anything is sent.
    expect(preview).to_contain_text("notes.jpg: This is not an image we can read.")
    expect(preview).to_contain_text("tiny.png: The image is 40x30 pixels; it must be at least")
    button = page.locator("#submit-button")
    expect(button).to_be_disabled()
    expect(page.locator("#submit-why")).to_have_text("Fix the refused lines first.")

    # APIXO keeps transparency by default; JPEG is warned about.
    page.locator('input[name="provider"][value="apixo"]').check()
    page.locator('select[name="apixo-output_format"]').select_option("jpg")
    expect(preview).to_contain_text(
        "JPEG has no transparency: the transparent parts of logo.png will turn black."
    )
    page.locator('select[name="apixo-output_format"]').select_option("keep")
    expect(preview.locator(".transparency-warning")).to_have_count(0)

    page.set_input_files("#images", files(LOGO))
    expect(button).to_have_text("Upscale 2 jobs · free + sandbox, not billed")
    expect(button).to_be_enabled()
    shot(page, "upload-page-1280")

    # The bar stays in view at the top of the page and after scrolling to the bottom.
    page.evaluate("window.scrollTo(0, 0)")
    assert bar_in_view(page)
    page.screenshot(path="test-artifacts/upload-page-viewport-1280.png")
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    assert bar_in_view(page)

    # A pasted image joins the chosen files under a made-up name.
    pasted = base64.b64encode(image_bytes(120, 90, "PNG", unique=True)).decode()
    page.evaluate(
        """b64 => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], "image.png", { type: "image/png" }));
            document.body.dispatchEvent(
                new ClipboardEvent("paste", { clipboardData: dt, bubbles: true }));
        }""",
        pasted,
    )
    expect(page.locator("#file-list li")).to_have_count(2)
    expect(page.locator("#file-list")).to_contain_text("pasted-1.png")
    expect(button).to_have_text("Upscale 4 jobs · free + sandbox, not billed")

    page.set_viewport_size({"width": 390, "height": 844})
    page.evaluate("window.scrollTo(0, 0)")
    assert_fits(page, 390)
    assert bar_in_view(page)
    page.screenshot(path="test-artifacts/upload-page-viewport-390.png")
    shot(page, "upload-page-390")


def test_saving_and_applying_a_preset(page):
    sign_in(page)
    name = f"Web {uuid.uuid4().hex[:6]}"
    page.locator('input[name="provider"][value="apixo"]').check()
    page.locator('select[name="apixo-resolution"]').select_option("8k")
    page.locator('select[name="apixo-output_format"]').select_option("png")
    page.get_by_text("Save the providers and options below as a preset").click()
    page.get_by_label("Preset name").fill(name)
    page.get_by_role("button", name="Save preset").click()
    expect(page.locator("#presets")).to_contain_text(f"Saved “{name}”")

    # Change everything, then apply the preset: the panels come back as saved.
    page.reload()
    page.locator('input[name="provider"][value="apixo"]').uncheck()
    expect(page.locator('input[name="provider"][value="apixo"]')).not_to_be_checked()
    # The option reads "name (team)" when the user is in several teams (the shared portal).
    value = page.locator("#preset-select option", has_text=name).get_attribute("value")
    page.locator("#preset-select").select_option(value)
    page.get_by_role("button", name="Use this preset").click()
    expect(page.locator('input[name="provider"][value="apixo"]')).to_be_checked()
    expect(page.locator('input[name="provider"][value="local"]')).to_be_checked()
    expect(page.locator('select[name="apixo-resolution"]')).to_have_value("8k")
    expect(page.locator('select[name="apixo-output_format"]')).to_have_value("png")
    shot(page, "upload-presets-1280")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete", exact=True).click()
    expect(page.locator("#presets")).to_contain_text(f"Deleted “{name}”")
