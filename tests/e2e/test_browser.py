"""What a user does in Chromium: upload, watch jobs finish live, compare, download,
filter the history, get refused, sign in. Screenshots land in test-artifacts/."""

import io
import re
import uuid
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.e2e.conftest import shot, sign_in
from tests.images import image_bytes

pytestmark = pytest.mark.e2e

FINISH_TIMEOUT = 30_000  # ms; the rows poll every 2 s, a local 2x job takes well under one
ENDED = re.compile(r"\bstate-(succeeded|failed|canceled)\b")
SUCCEEDED = re.compile(r"\bstate-succeeded\b")


def tag() -> str:
    """A prefix no other test uses, so each test finds its own rows in the shared portal."""
    return uuid.uuid4().hex[:8]


def png(name: str, width: int, height: int) -> dict:
    return {
        "name": name,
        "mimeType": "image/png",
        "buffer": image_bytes(width, height, "PNG", unique=True),
    }


def jpeg(name: str, width: int, height: int) -> dict:
    return {
        "name": name,
        "mimeType": "image/jpeg",
        "buffer": image_bytes(width, height, "JPEG", unique=True),
    }


def upload(page, files: list[dict], scale: str = "2"):
    """Fill in the upload page as a user would and press Upscale (htmx, no navigation)."""
    page.set_input_files("#images", files)
    expect(page.locator("#file-list li")).to_have_count(len(files))
    expect(page.locator('input[name="provider"][value="local"]')).to_be_checked()
    page.locator('select[name="local-scale"]').select_option(scale)
    page.get_by_role("button", name="Upscale").click()


def row(page, name: str):
    return page.locator("tr.job-row", has=page.get_by_role("link", name=name, exact=True))


def wait_until_succeeded(page, names: list[str]):
    """Wait for the rows' own htmx polling to bring each job to an end; it must be success."""
    for name in names:
        expect(row(page, name)).to_have_class(ENDED, timeout=FINISH_TIMEOUT)
    for name in names:
        expect(row(page, name)).to_have_class(SUCCEEDED, timeout=1_000)


def test_a_user_uploads_two_images_and_watches_them_finish(page):
    sign_in(page)
    t = tag()
    names = [f"harbour-{t}.png", f"meadow-{t}.jpg"]
    url = page.url
    page.evaluate("window.__marker = 1")  # gone if anything navigates the page

    upload(page, [png(names[0], 120, 90), jpeg(names[1], 100, 80)], scale="2")

    outcome = page.locator("#outcome")
    expect(outcome.locator(".alert.ok")).to_contain_text("2 jobs queued")
    expect(outcome.locator("tr.job-row")).to_have_count(2)
    for name in names:
        expect(row(page, name)).to_be_visible()
    # The accepted files are cleared from the picker, ready for the next batch.
    assert page.eval_on_selector("#images", "el => el.files.length") == 0

    wait_until_succeeded(page, names)
    expect(row(page, names[0])).to_contain_text("120×90 → 240×180")
    expect(row(page, names[1])).to_contain_text("100×80 → 200×160")
    shot(page, "upload-done")

    assert page.evaluate("window.__marker") == 1, "the page reloaded or navigated"
    assert page.url == url


def test_a_finished_job_shows_the_comparison_and_downloads(page, tmp_path: Path):
    sign_in(page)
    name = f"lighthouse-{tag()}.png"
    upload(page, [png(name, 120, 90)], scale="2")
    expect(page.locator("#outcome .alert.ok")).to_contain_text("1 job queued")
    wait_until_succeeded(page, [name])

    row(page, name).get_by_role("link", name=name, exact=True).click()
    page.wait_for_url(re.compile(r"/jobs/\d+/$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text(name)

    slider = page.locator("img-comparison-slider")
    expect(slider).to_be_visible()
    images = slider.locator("img")
    expect(images).to_have_count(2)
    page.wait_for_function(
        """() => [...document.querySelectorAll('img-comparison-slider img')]
                 .every(img => img.complete && img.naturalWidth > 0)""",
        timeout=10_000,
    )
    before, after = images.evaluate_all(
        "imgs => imgs.map(img => [img.naturalWidth, img.naturalHeight])"
    )
    assert before == [120, 90]
    assert after == [240, 180]
    assert after[0] == 2 * before[0]
    shot(page, "job-detail")

    with page.expect_download() as info:
        page.get_by_role("link", name="Download result").click()
    download = info.value
    stem = name.rsplit(".", 1)[0]
    assert download.suggested_filename == f"{stem}-local-240x180.png"
    assert download.suggested_filename.endswith(".png")
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    with Image.open(io.BytesIO(saved.read_bytes())) as result:
        assert result.format == "PNG"
        assert result.size == (240, 180)


def test_history_page_filters(page):
    sign_in(page)
    t = tag()
    names = [f"dune-{t}.png", f"glacier-{t}.png"]
    upload(page, [png(names[0], 96, 80), png(names[1], 80, 96)], scale="2")
    expect(page.locator("#outcome .alert.ok")).to_contain_text("2 jobs queued")
    wait_until_succeeded(page, names)

    page.get_by_role("link", name="History", exact=True).click()
    page.wait_for_url(re.compile(r"/jobs/$"))
    for name in names:
        expect(row(page, name)).to_be_visible()
    shot(page, "history")

    results = page.locator("#results")
    page.get_by_label("Status").select_option(label="Succeeded")
    page.wait_for_url(re.compile(r"[?&]state=succeeded\b"))
    expect(results.locator("tr.job-row").first).to_be_visible()
    expect(results.locator("tr.job-row:not(.state-succeeded)")).to_have_count(0)
    for name in names:
        expect(row(page, name)).to_be_visible()
    shown = results.locator("tr.job-row").count()

    page.get_by_label("File name").fill(t)
    page.wait_for_url(re.compile(rf"[?&]q={t}\b"))
    expect(results.locator("tr.job-row")).to_have_count(2)
    expect(results).to_contain_text("2 jobs")
    for name in names:
        expect(row(page, name)).to_be_visible()
    assert shown >= 2

    page.get_by_label("File name").fill(f"glacier-{t}")
    page.wait_for_url(re.compile(rf"[?&]q=glacier-{t}\b"))
    expect(results.locator("tr.job-row")).to_have_count(1)
    expect(row(page, names[1])).to_have_class(SUCCEEDED)
    expect(page.get_by_label("Status")).to_have_value("succeeded")


def test_a_bad_upload_is_refused_in_the_page(page):
    sign_in(page)
    page.evaluate("window.__marker = 1")
    page.set_input_files(
        "#images",
        [{"name": "notes.png", "mimeType": "image/png", "buffer": b"shopping: milk, eggs\n"}],
    )
    # The preview refuses it before anything is sent, and the button says why it waits.
    expect(page.locator("#preview tr.refused")).to_contain_text("notes.png")
    expect(page.locator("#preview tr.refused")).to_contain_text("not an image")
    button = page.locator("#submit-button")
    expect(button).to_be_disabled()
    expect(page.locator("#submit-why")).not_to_be_empty()

    # The server decides all the same: a form sent anyway (a stale page, a script) is
    # refused in the page, not with a reload.
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.eval_on_selector("#upload-form", "form => form.requestSubmit()")
    assert answer.value.status == 422  # the server refuses; the page must show why

    error = page.locator("#outcome .alert.error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("notes.png")
    expect(error).to_contain_text("not an image")
    expect(page.locator("#outcome tr.job-row")).to_have_count(0)
    shot(page, "upload-refused")

    # The file stays chosen so the user can swap it and resubmit.
    assert page.eval_on_selector("#images", "el => el.files.length") == 1
    assert page.eval_on_selector("#images", "el => el.files[0].name") == "notes.png"
    expect(page.locator("#file-list li")).to_have_count(1)
    assert page.evaluate("window.__marker") == 1, "the refusal reloaded the page"


def test_the_login_page(page):
    page.goto("/accounts/login/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    shot(page, "login")

    page.get_by_label("User name").fill("e2e-user")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".alert.error")).to_contain_text("That user name and password do not match")
    expect(page).to_have_url(re.compile(r"/accounts/login/$"))
    expect(page.get_by_label("User name")).to_have_value("e2e-user")


def test_images_dropped_on_the_drop_zone_are_uploaded(page):
    sign_in(page)
    name = f"dropped-{tag()}.png"
    data = list(image_bytes(90, 70, "PNG", unique=True))
    # What a drag from the desktop delivers: a drop event carrying File objects.
    page.evaluate(
        """([name, bytes]) => {
            const dt = new DataTransfer();
            dt.items.add(new File([new Uint8Array(bytes)], name, {type: "image/png"}));
            const zone = document.getElementById("dropzone");
            zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: dt, bubbles: true}));
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true}));
        }""",
        [name, data],
    )
    expect(page.locator("#file-list li")).to_have_text(re.compile(rf"^{name} · "))
    page.get_by_role("button", name="Upscale").click()
    expect(page.locator("#outcome .alert.ok")).to_contain_text("1 job queued")
    wait_until_succeeded(page, [name])
    expect(row(page, name)).to_contain_text("90×70 → 180×140")
