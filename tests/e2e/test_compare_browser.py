"""Compare like a professional and know when it is done, in Chromium: one image to two
providers, the tab title's counts, one browser notification, synchronised zoom and pan
on the compare page, 1:1, "keep this one", and the job page's before/after zoom."""

import re
import uuid

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import assert_fits, shot, sign_in
from tests.images import image_bytes

pytestmark = pytest.mark.e2e

# Records each notification the page creates; permission questions go to the real one.
RECORD_NOTIFICATIONS = """
window.__notes = [];
(function () {
  const Real = window.Notification;
  class Recorded {
    constructor(title, options) {
      window.__notes.push({ title: title, body: (options || {}).body || "" });
      this.onclick = null;
    }
    close() {}
    static get permission() { return Real.permission; }
    static requestPermission() { return Real.requestPermission(); }
  }
  window.Notification = Recorded;
})();
"""

# For each image of the first viewer: its zoom, and which point of the picture (as a
# fraction of it) is at the centre of its frame. Read from the computed transform.
VIEW = """
(viewer) => [...viewer.querySelectorAll('img[data-viewer-img]')].map((img) => {
  const m = new DOMMatrixReadOnly(getComputedStyle(img).transform);
  const w = img.offsetWidth, h = img.offsetHeight;
  return {
    scale: m.a,
    aspect: h / w,
    cx: (w / 2 - m.e) / (m.a * w),
    cy: (h / 2 - m.f) / (m.d * h),
    shown: img.getBoundingClientRect().width,
    natural: Number(img.getAttribute('width')),
    result: img.hasAttribute('data-result'),
  };
})
"""


def same_view(views):
    first = views[0]
    for view in views[1:]:
        assert view["scale"] == pytest.approx(first["scale"], abs=1e-6)
        assert view["aspect"] == pytest.approx(first["aspect"], abs=0.01)  # same frame
        assert view["cx"] == pytest.approx(first["cx"], abs=1e-3)
        assert view["cy"] == pytest.approx(first["cy"], abs=1e-3)
    return first


def fits_at_390(page, name):
    page.set_viewport_size({"width": 390, "height": 844})
    assert_fits(page, 390)
    shot(page, f"{name}-390")
    page.set_viewport_size({"width": 1280, "height": 900})


def test_compare_zoom_keep_and_notify(page, portal):
    page.context.grant_permissions(["notifications"], origin=portal.url)
    page.context.add_init_script(RECORD_NOTIFICATIONS)
    sign_in(page)
    name = f"zoom-{uuid.uuid4().hex[:8]}.png"
    page.set_input_files(
        "#images",
        [{"name": name, "mimeType": "image/png", "buffer": image_bytes(200, 150, unique=True)}],
    )
    page.locator('select[name="local-scale"]').select_option("2")
    page.locator('input[name="provider"][value="ximilar"]').check()
    page.locator('select[name="ximilar-scale"]').select_option("4")
    page.get_by_role("button", name="Upscale").click()

    # Know when it is done: the counts in the tab title, then one notification.
    outcome = page.locator("#outcome")
    expect(outcome.locator("tr.job-row")).to_have_count(2)
    expect(page).to_have_title(re.compile(r"^\(2 running\) Upload · "))
    page.get_by_role("button", name="Notify me when done").click()
    expect(page.locator("#notify-me")).to_have_text("Stop notifying me")
    shot(page, "upload-notify")
    for row in outcome.locator("tr.job-row").all():
        expect(row).to_have_class(re.compile(r"\bstate-succeeded\b"), timeout=45_000)
    expect(page).to_have_title(re.compile(r"^\(2 done\) Upload · "))
    page.wait_for_function("window.__notes.length > 0")
    assert page.evaluate("window.__notes") == [
        {"title": "2 jobs finished: 2 succeeded", "body": "Upload · Upscaler Portal"}
    ]

    outcome.get_by_role("link", name="compare the providers side by side").click()
    page.wait_for_url(re.compile(r"/jobs/batch/[0-9a-f-]+/compare/$"))
    expect(page).to_have_title(re.compile(r"^\(2 done\) Compare · "))
    viewer = page.locator("[data-viewer]").first
    stages = viewer.locator(".viewer-stage")
    expect(stages).to_have_count(3)  # the original and two results
    page.wait_for_function(
        "() => [...document.querySelectorAll('img[data-viewer-img]')]"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )

    # Zoom in twice, then drag one result: every panel follows.
    viewer.get_by_role("button", name="Zoom in").click()
    viewer.get_by_role("button", name="Zoom in").click()
    box = stages.nth(2).bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 - 40, box["y"] + box["height"] / 2 - 30, steps=4)
    page.mouse.up()
    view = same_view(viewer.evaluate(VIEW))
    assert view["scale"] == pytest.approx(2.25)
    assert view["cx"] > 0.5 and view["cy"] > 0.5  # moved right and down in the picture
    shot(page, "compare-zoomed")

    # 1:1: the largest result (Ximilar's 800x600) shows one image pixel per screen pixel.
    viewer.get_by_role("button", name="Actual pixels: one image pixel per screen pixel").click()
    views = viewer.evaluate(VIEW)
    same_view(views)
    largest = max((v for v in views if v["result"]), key=lambda v: v["natural"])
    assert largest["natural"] == 800
    assert largest["shown"] == pytest.approx(800, abs=1)
    expect(viewer.locator(".viewer-level")).to_have_text("100%")

    # Keep one: its badge shows, the view stays where it was.
    tile = page.locator("figure.tile", has_text="Ximilar")
    tile.get_by_role("button", name="Keep this one").click()
    expect(tile.locator(".badge.kept")).to_have_text("Kept")
    expect(page.get_by_role("button", name="Keep this one")).to_have_count(1)
    assert same_view(viewer.evaluate(VIEW))["scale"] == pytest.approx(largest["scale"])
    viewer.get_by_role("button", name="Fit the whole image").click()
    shot(page, "compare")
    fits_at_390(page, "compare")

    # The job page: before and after zoom together; the kept badge is there too.
    tile.get_by_role("link", name="Ximilar").click()
    page.wait_for_url(re.compile(r"/jobs/\d+/$"))
    expect(page).to_have_title(re.compile(rf"^\(1 done\) {re.escape(name)} · "))
    expect(page.locator("#live .badge.kept")).to_have_text("Kept")
    live = page.locator("[data-viewer]")
    page.wait_for_function(
        "() => [...document.querySelectorAll('img[data-viewer-img]')]"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )
    live.get_by_role("button", name="Zoom in").click()
    before, after = live.evaluate(VIEW)
    same_view([before, after])
    assert before["scale"] == pytest.approx(1.5)
    shot(page, "job-zoomed")
    fits_at_390(page, "job")

    # History: the same counts in the title, the kept badge on the chosen row.
    page.get_by_role("link", name="← History").click()
    page.wait_for_url(re.compile(r"/jobs/"))
    row = page.locator("tr.job-row", has=page.get_by_role("link", name=name)).filter(
        has_text="Ximilar"
    )
    expect(row.locator(".badge.kept")).to_have_text("kept")
    expect(page).to_have_title(re.compile(r"^\((\d+ running · )?\d+ done\) History · "))
