"""Prices where people decide, in Chromium: the quote follows the options as they change,
the budget is shown before submit, and the job page says what the job cost."""

import re
import uuid

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import USER, shot, sign_in
from tests.images import image_bytes

pytestmark = pytest.mark.e2e


def set_budget(portal, amount):
    value = "None" if amount is None else repr(amount)
    portal.manage(
        "shell",
        "-c",
        "from billing.models import Team; "
        f"Team.objects.filter(memberships__user__username={USER!r})"
        f".update(monthly_budget={value})",
    )


def choose_pixazo(page, width=1000, height=1000):
    name = f"quote-{uuid.uuid4().hex[:8]}.png"
    page.set_input_files(
        "#images",
        # Unique: an image quoted before would be quoted as a free reuse.
        [
            {
                "name": name,
                "mimeType": "image/png",
                "buffer": image_bytes(width, height, unique=True),
            }
        ],
    )
    page.locator('input[name="provider"][value="local"]').uncheck()
    page.locator('input[name="provider"][value="pixazo"]').check()
    return name


def test_the_quote_follows_the_options(page):
    sign_in(page)
    choose_pixazo(page)
    preview = page.locator("#preview")
    total = page.locator("#preview-total")
    pixazo_total = page.locator("#total-pixazo")

    expect(total).to_have_text("$0.07")
    expect(preview).to_contain_text("2000x2000 output = 4.00 MP: Pixazo Crystal up to 4 MP")
    expect(preview.locator(".hint")).to_have_count(0)  # nothing smaller at 2x

    page.locator('select[name="pixazo-scale"]').select_option("4")
    expect(total).to_have_text("$0.23")
    expect(preview).to_contain_text("16.00 MP: Pixazo Crystal 8-16 MP bracket, $0.23")
    expect(preview.locator(".hint")).to_contain_text("At 2x: $0.07 (up to 4 MP bracket)")
    expect(pixazo_total).to_contain_text("$0.23")

    page.locator('select[name="pixazo-scale"]').select_option("8")
    expect(total).to_have_text("$0.45")
    expect(preview).to_contain_text("64.00 MP: Pixazo Crystal over 16 MP bracket, $0.45")
    expect(preview.locator(".hint")).to_contain_text("At 4x: $0.23 (8-16 MP bracket)")
    expect(pixazo_total).to_contain_text("$0.45")

    # The table beside it prices the same image with all six providers.
    for slug in ("local", "pixazo", "pixelcut", "fal", "ximilar", "apixo"):
        expect(page.locator(f"#total-{slug}")).to_be_visible()
    expect(page.locator("#total-pixelcut")).to_contain_text("assumed price")
    preview.scroll_into_view_if_needed()
    shot(page, "upload-quote")


def test_the_budget_is_shown_before_submit(page, portal):
    set_budget(portal, "0.05")
    try:
        sign_in(page)
        expect(page.locator("#budget-state")).to_contain_text("left $0.05")
        name = choose_pixazo(page)
        expect(page.locator("#preview-total")).to_have_text("$0.07")
        warning = page.locator("#budget-over")
        # Sandbox jobs are not charged, so the server accepts this one; the page still
        # says it would not fit the budget at real prices. (The real refusal is tested
        # against a provider with a key in tests/test_quotes.py.)
        expect(warning).to_contain_text("More than what is left of the budget")
        expect(warning).to_contain_text("$0.05")
        shot(page, "upload-over-budget")

        page.get_by_role("button", name="Upscale").click()
        row = page.locator("#outcome tr.job-row")
        expect(row).to_contain_text("$0.07")
        expect(row).to_have_class(re.compile(r"\bstate-succeeded\b"), timeout=45_000)
        row.get_by_role("link", name=name).click()
        cost = page.locator("#cost")
        expect(cost).to_contain_text("Sandbox - not billed: what a real provider would have")
        expect(cost).to_contain_text("pixazo v1, effective 2026-01-01")
        expect(cost).to_contain_text("2000x2000 output = 4.00 MP")
        expect(cost.locator("dd").nth(1)).to_contain_text("$0.07")  # the charge
        cost.scroll_into_view_if_needed()
        shot(page, "job-cost")
    finally:
        set_budget(portal, None)


def test_an_over_budget_submission_is_refused_in_the_page(page, portal):
    set_budget(portal, "0.04")
    try:
        sign_in(page)
        name = f"over-{uuid.uuid4().hex[:8]}.png"
        page.set_input_files(
            "#images",
            [{"name": name, "mimeType": "image/png", "buffer": image_bytes(300, 200, unique=True)}],
        )
        page.locator('input[name="provider"][value="local"]').uncheck()
        page.locator('input[name="provider"][value="pixelcut"]').check()  # real mode, $0.05
        expect(page.locator("#preview-total")).to_contain_text("$0.05")
        # The bar's button waits and says why; the budget box says the rest.
        expect(page.locator("#submit-button")).to_be_disabled()
        expect(page.locator("#submit-why")).not_to_be_empty()
        expect(page.locator("#budget-over")).to_contain_text("Over what is left of the budget")
        # Sent anyway (a stale page, a script): the server refuses it in the page.
        page.eval_on_selector("#upload-form", "form => form.requestSubmit()")
        refusal = page.locator("#outcome .alert.error")
        expect(refusal).to_contain_text("Nothing was uploaded.")
        expect(refusal).to_contain_text("monthly budget of $0.04")
        expect(refusal).to_contain_text("this submission $0.05")
        expect(refusal).to_contain_text("The budget resets on")
        expect(page.locator("#outcome tr.job-row")).to_have_count(0)
        shot(page, "upload-refused-budget")
    finally:
        set_budget(portal, None)
