"""The Account page in Chromium: make an API token, see it once, call the API with it over
real HTTP, revoke it; the page fits a phone."""

import uuid

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import assert_fits, shot, sign_in

pytestmark = pytest.mark.e2e


def test_a_person_makes_uses_and_revokes_a_token(portal, page):
    name = f"script {uuid.uuid4().hex[:6]}"
    sign_in(page)
    page.get_by_role("link", name="Account", exact=True).click()
    expect(page.get_by_role("heading", name="API tokens")).to_be_visible()

    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Make a token").click()
    expect(page.locator("#token-made")).to_contain_text("shown this once")
    token = page.locator("#new-token").input_value()
    assert token.startswith("upk_")
    expect(page.locator("pre.api-example")).to_contain_text(f"Bearer {token}")
    shot(page, "account-token-1280")
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "account-token-390")
    assert_fits(page, 390)
    page.set_viewport_size({"width": 1280, "height": 900})

    me = page.request.get("/api/v1/tokens/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status == 200 and me.json()["name"] == name

    page.goto("/account/")
    row = page.locator("li.token").filter(has_text=name)
    expect(row).to_contain_text("last used")
    assert token not in page.content()  # never shown again
    row.get_by_role("button", name="Revoke").click()
    expect(page.locator(".alert.ok")).to_contain_text("no longer works")
    expect(page.locator("li.token").filter(has_text=name)).to_contain_text("revoked")
    gone = page.request.get("/api/v1/tokens/me", headers={"Authorization": f"Bearer {token}"})
    assert gone.status == 401
    assert gone.headers["content-type"] == "application/problem+json"
