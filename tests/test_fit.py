"""Fit to budget (jobs/fit.py): which provider and option sets fit what is left of the
team's budget this month, priced by the quote's own functions, on the upload page's
preview and in the API (POST /api/v1/fit)."""

import json
from decimal import Decimal

import pytest

from billing.models import LedgerEntry
from jobs import fit, quotes
from jobs.api import tokens
from jobs.imaging import ImageInfo

FORTY = "&".join(f"size=img{n}.png|1000|1000|9" for n in range(40))


@pytest.fixture
def real_keys(settings):
    """Pixazo and APIXO with keys: billed, so their sets count against the budget. Nothing
    is sent to them here (closed ports)."""
    settings.PROVIDER_SETTINGS = {
        **settings.PROVIDER_SETTINGS,
        "pixazo": {"api_key": "k", "base_url": "http://127.0.0.1:9/x"},
        "apixo": {"api_key": "k", "base_url": "http://127.0.0.1:9/y"},
    }


def infos(n=40, w=1000, h=1000):
    return [(f"img{i}.png", ImageInfo("PNG", w, h, False, 9)) for i in range(n)]


def planned(team, **raw):
    return quotes.preview([], infos(), raw_options=raw, team=team).fit


def by_name(sets):
    return {s.name: s for s in sets}


@pytest.mark.django_db
def test_the_sentence_names_what_fits_and_what_is_over(team, real_keys):
    team.monthly_budget = Decimal("3.50")
    team.save()
    plan = planned(team)
    # From the shipped price book: Pixazo 2x of 1000x1000 is 4.0 MP, $0.07 an image;
    # 4x is 16 MP, $0.23; APIXO is $0.01 an image at any resolution; Local is free.
    assert plan.sentence == (
        "All 40 images fit at Local (Pillow) 4x (free), APIXO 8k ($0.40) or Pixazo Crystal "
        "2x ($2.80); Pixazo Crystal 4x needs $9.20, $5.70 over."
    )
    fits, over = by_name(plan.fits), by_name(plan.over)
    assert fits["Pixazo Crystal 2x"].amount == Decimal("2.80")
    assert fits["APIXO 4k"].amount == Decimal("0.40")
    assert over["Pixazo Crystal 4x"].over_by == Decimal("5.70")
    assert [s.amount for s in plan.fits] == sorted(s.amount for s in plan.fits)  # cheapest first
    assert [s.amount for s in plan.over] == sorted(s.amount for s in plan.over)  # nearest first


@pytest.mark.django_db
def test_what_is_left_counts_spend_and_holds(team, real_keys):
    team.monthly_budget = Decimal("5.00")
    team.save()
    for kind, amount, key in (("charge", "1.00", "c"), ("hold", "0.70", "h")):
        LedgerEntry.objects.create(
            team=team, kind=kind, provider="pixazo", amount=Decimal(amount), idempotency_key=key
        )
    plan = planned(team)
    assert plan.left == Decimal("3.30")  # 5.00 - 1.00 spent - 0.70 held
    assert by_name(plan.over)["Pixazo Crystal 4x"].over_by == Decimal("5.90")


@pytest.mark.django_db
def test_the_sets_are_priced_by_the_quote_for_each_image(team, real_keys):
    """The same Pricer as the preview's lines: a set's amount is the sum of the quotes."""
    team.monthly_budget = Decimal("100")
    team.save()
    plan = quotes.preview(
        [("pixazo", {"scale": "4"})], infos(3, 1500, 900), raw_options={}, team=team
    )
    line_total = sum(line.quote.amount for line in plan.lines)
    assert by_name(plan.fit.fits)["Pixazo Crystal 4x"].amount == line_total


@pytest.mark.django_db
def test_other_options_are_priced_at_their_panel_values(team, settings):
    settings.PROVIDER_SETTINGS = {
        **settings.PROVIDER_SETTINGS,
        "ximilar": {"api_key": "k", "base_url": "http://127.0.0.1:9/z"},
    }
    team.monthly_budget = Decimal("100")
    team.save()
    classic = by_name(planned(team).fits)["Ximilar 2x"]
    gan = by_name(planned(team, ximilar={"model_type": "gan"}).fits)["Ximilar 2x"]
    assert gan.amount == 2 * classic.amount  # GAN's brackets cost twice classic's
    assert gan.options["model_type"] == "gan"


@pytest.mark.django_db
def test_no_budget_means_nothing_to_plan(team, real_keys):
    plan = planned(team)
    assert plan.no_budget
    assert plan.sets == []
    assert plan.sentence == "Studio has no monthly budget: nothing to plan against."


@pytest.mark.django_db
def test_sandbox_providers_are_kept_apart_as_would_cost(team):
    """Without keys, the providers run against their sandboxes: not billed."""
    team.monthly_budget = Decimal("3.50")
    team.save()
    plan = planned(team)
    assert {s.provider.slug for s in plan.fits + plan.over} == {"local"}
    sandbox = by_name(plan.sandbox_fits + plan.sandbox_over)
    assert sandbox["Pixazo Crystal 2x"].amount == Decimal("2.80")
    assert not sandbox["Pixazo Crystal 4x"].fits
    assert plan.sandbox_sentence.startswith(
        "Sandbox, not billed: at real prices, all 40 images fit at "
    )
    assert "Pixazo Crystal 4x needs $9.20, $5.70 over" in plan.sandbox_sentence


def test_a_free_number_lists_its_suggested_values():
    from jobs.providers import get_provider

    opt = fit.main_option(get_provider("fal"))
    assert [label for _v, label in fit.values_of(opt)] == ["1.5x", "2x", "3x", "4x", "6x", "8x"]


@pytest.mark.django_db
def test_the_preview_shows_the_block_with_a_button_per_fitting_set(owner_client, team, real_keys):
    team.monthly_budget = Decimal("3.50")
    team.save()
    html = owner_client.get("/upload/preview/?" + FORTY).content.decode()
    block = html.split('id="fit"')[1].split("</section>")[0]
    assert "What fits the budget" in block
    assert "$3.50 left." in block
    assert "Pixazo Crystal 4x needs $9.20, $5.70 over." in block
    assert "Use Pixazo Crystal 2x · $2.80" in block
    assert "Use Pixazo Crystal 4x" not in block  # over: no button
    assert "/upload/fit/apply/?set=pixazo&amp;set-scale=2" in block


@pytest.mark.django_db
def test_the_preview_says_no_monthly_budget(owner_client):
    html = owner_client.get("/upload/preview/?size=a.png|800|600|9").content.decode()
    assert "Studio has no monthly budget: nothing to plan against." in html


@pytest.mark.django_db
def test_using_a_set_fills_the_provider_panels(owner_client):
    response = owner_client.get(
        "/upload/fit/apply/?set=pixazo&set-scale=4&provider=local&local-scale=3&fal-scale=6"
    )
    assert response.status_code == 200
    assert response["HX-Trigger"] == "preset-applied"
    html = response.content.decode()
    pixazo = html.split('value="pixazo"')[1].split("</fieldset>")[0]
    assert pixazo.lstrip().startswith("checked")
    assert '<option value="4" selected>' in pixazo
    local = html.split('value="local"')[1].split("</legend>")[0]
    assert "checked" not in local  # the set's provider alone
    assert 'name="fal-scale" value="6"' in html  # the other panels as they were


@pytest.mark.django_db
def test_using_a_set_of_no_provider_is_a_404(owner_client):
    assert owner_client.get("/upload/fit/apply/?set=nope").status_code == 404


# --- the API -------------------------------------------------------------------------------------
def call(client, user, body):
    _row, token = tokens.create(user, "script")
    return client.post(
        "/api/v1/fit",
        json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


@pytest.mark.django_db
def test_the_api_answers_the_same_plan(client, owner, team, real_keys):
    team.monthly_budget = Decimal("3.50")
    team.save()
    images = [{"name": f"i{n}.png", "width": 1000, "height": 1000} for n in range(40)]
    response = call(client, owner, {"images": images})
    assert response.status_code == 200
    body = response.json()
    assert body["sentence"] == planned(team).sentence
    assert body["left"] == "3.5000"
    pixazo4 = next(s for s in body["over"] if s["provider"] == "pixazo" and s["label"] == "4x")
    assert (pixazo4["amount"], pixazo4["over_by"], pixazo4["fits"]) == ("9.2000", "5.7000", False)
    assert body["fits"][0]["amount"] == "0.0000"  # Local, free, cheapest first
    assert all(s["sandbox"] for s in body["sandbox"])


@pytest.mark.django_db
def test_the_api_refuses_another_teams_plan(client, owner, other_team):
    response = call(client, owner, {"team": other_team.pk, "images": [{"width": 9, "height": 9}]})
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"


@pytest.mark.django_db
def test_the_api_says_why_images_cannot_be_planned(client, owner):
    response = call(client, owner, {"images": [{"name": "tiny.png", "width": 10, "height": 10}]})
    assert response.status_code == 422
    assert response.json()["errors"][0].startswith("tiny.png: ")


@pytest.mark.django_db
def test_the_api_needs_a_token(client):
    assert client.post("/api/v1/fit", "{}", content_type="application/json").status_code == 401
