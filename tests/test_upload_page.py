"""The upload page (issue #11): transparency kept by default and warned about, the
preview refusing what the submit refuses, the largest scale an image allows, the sticky
bar's button text, and saved presets."""

import html as html_text

import pytest

from jobs import intake
from jobs.imaging import ImageInfo
from jobs.models import Job, Preset
from jobs.providers import get_provider
from tests.images import image_bytes, png_bomb, upload

HTMX = {"HTTP_HX_REQUEST": "true"}


def preview(client, query, **headers):
    response = client.get("/upload/preview/?" + query, **headers)
    assert response.status_code == 200
    return html_text.unescape(response.content.decode())


def submit_errors(client, *files, provider="local", **options) -> list[str]:
    data = {"provider": provider, "images": list(files), **options}
    response = client.post("/", data)
    assert response.status_code == 422
    return response.context["errors"]


@pytest.fixture
def real_pixazo(settings):
    """Pixazo with a key: real money in the quote (nothing is sent: a closed port)."""
    settings.PROVIDER_SETTINGS = {
        **settings.PROVIDER_SETTINGS,
        "pixazo": {"api_key": "k", "base_url": "http://127.0.0.1:9/x"},
    }


# --- the browser's measurements ---------------------------------------------------------------
def test_sizes_carry_format_and_transparency_and_old_entries_still_parse():
    parsed = dict(
        intake.parse_sizes(
            [
                "logo.png|200|100|999|PNG+alpha",
                "a|b.jpg|300|200|5000|JPEG",  # a pipe in the name
                "old.png|64|64|10",  # the older four-field entry
                "notes.jpg|0|0|27|unreadable",
                "junk",
                "neg.png|-1|5|5|PNG",
            ]
        )
    )
    assert parsed["logo.png"] == ImageInfo("PNG", 200, 100, True, 999)
    assert parsed["a|b.jpg"] == ImageInfo("JPEG", 300, 200, False, 5000)
    assert parsed["old.png"] == ImageInfo("PNG", 64, 64, False, 10)
    assert parsed["notes.jpg"] == ImageInfo("", 0, 0, False, 27)
    assert set(parsed) == {"logo.png", "a|b.jpg", "old.png", "notes.jpg"}


# --- 4: transparency ------------------------------------------------------------------------
def test_every_provider_that_picks_a_format_keeps_transparency_by_default():
    for slug in ("apixo", "ximilar"):
        opt = get_provider(slug).option("output_format")
        assert dict(opt.choices)[opt.default].startswith("Keep transparency"), slug


@pytest.mark.parametrize("mode,sent", [("RGBA", "png"), ("RGB", "jpg")])
def test_keep_transparency_is_resolved_per_image_to_a_format_apixo_takes(owner_client, mode, sent):
    response = owner_client.post(
        "/", {"provider": "apixo", "images": [upload("logo.png", mode=mode)]}
    )
    assert response.status_code == 302
    job = Job.objects.get()
    assert job.options == {"resolution": "4k", "output_format": sent}


def test_the_apixo_sandbox_takes_the_resolved_format_and_keeps_the_alpha(sandbox, submit):
    sandbox.faults("apixo", webhook="off")
    job = sandbox.settle(submit("apixo", name="logo.png", image={"mode": "RGBA"}, resolution="2k"))
    assert job.state == Job.State.SUCCEEDED, job.error_message
    assert job.options["output_format"] == "png" and job.output_format == "PNG"


def test_a_rerun_resolves_keep_transparency_from_the_stored_input(owner, team, make_job):
    job = make_job(owner, team, name="logo.png", mode="RGBA")
    (again,) = intake.rerun(job, user=owner, choices=[("apixo", {"output_format": "keep"})])
    assert again.options["output_format"] == "png"


def test_the_preview_warns_when_the_format_drops_transparency(owner_client):
    warning = (
        "JPEG has no transparency: the transparent parts of logo.png will turn black. "
        "Pick PNG or 'Keep transparency'."
    )
    alpha = "size=logo.png|200|200|999|PNG%2Balpha"
    assert warning in preview(owner_client, f"{alpha}&provider=apixo&apixo-output_format=jpg")
    assert warning in preview(owner_client, f"{alpha}&provider=ximilar&ximilar-output_format=jpg")
    assert "has no transparency" not in preview(owner_client, f"{alpha}&provider=apixo")
    opaque = "size=logo.png|200|200|999|PNG&provider=apixo&apixo-output_format=jpg"
    assert "has no transparency" not in preview(owner_client, opaque)


# --- 5: the preview refuses what the submit refuses ------------------------------------------
REFUSED = [
    # (the file the submit gets, what the browser measured, words in the refusal)
    (upload("tiny.png", width=40, height=30), "tiny.png|40|30|{n}|PNG", "at least 64x64"),
    (
        upload("logo.jpg", data=b"just some text, not pixels", content_type="image/jpeg"),
        "logo.jpg|0|0|{n}|unreadable",
        "not an image we can read",
    ),
    (
        upload("anim.gif", data=image_bytes(100, 100, fmt="GIF"), content_type="image/gif"),
        "anim.gif|100|100|{n}|GIF",
        "GIF images are not supported",
    ),
    (upload("bomb.png", data=png_bomb()), "bomb.png|100000|100000|{n}|PNG", "decompression bomb"),
]


@pytest.mark.parametrize("file,size,words", REFUSED, ids=[r[0].name for r in REFUSED])
def test_the_preview_shows_the_submits_own_refusal_per_file(owner_client, file, size, words):
    (error,) = submit_errors(owner_client, file, provider="pixazo")
    assert words in error and error.startswith(f"{file.name}: ")
    file.seek(0)
    html = preview(owner_client, f"size={size.format(n=file.size)}&provider=pixazo")
    assert error in html
    assert "$0.07" not in html  # the 40x30 PNG of the issue was quoted before


def test_the_preview_refuses_a_file_over_the_byte_limit_as_the_submit_does(settings, owner_client):
    settings.MAX_UPLOAD_BYTES = 500
    big = upload("big.png", width=200, height=200)
    (error,) = submit_errors(owner_client, big)
    assert "the limit is" in error
    html = preview(owner_client, f"size=big.png|200|200|{big.size}|PNG&provider=local")
    assert error in html


def test_a_refused_file_keeps_the_others_priced(owner_client):
    html = preview(
        owner_client, "size=tiny.png|40|30|99|PNG&size=ok.png|500|500|99|PNG&provider=pixazo"
    )
    assert "tiny.png: The image is 40x30 pixels" in html
    assert "1000×1000" in html and "$0.07" in html  # ok.png at 2x


# --- 10: the largest scale for this image ----------------------------------------------------
def test_fal_says_the_largest_scale_this_image_allows(owner_client, settings):
    # fal's own cap is 100 MP: a 1000x1000 image goes up to 10x.
    assert "up to 10× for this image" in preview(
        owner_client, "size=a.png|1000|1000|9|PNG&provider=fal"
    )
    html = preview(owner_client, "size=a.png|5000|4000|9|PNG&provider=fal&fal-scale=3")
    assert "up to 2.2× for this image" in html  # sqrt(100 MP / 20 MP) = 2.236
    assert "fal's limit is 100 MP" in html  # 3x is refused, with the limit beside it
    settings.MAX_RESULT_PIXELS = 49_000_000  # ours, when it is lower, wins
    assert "up to 7× for this image" in preview(
        owner_client, "size=a.png|1000|1000|9|PNG&provider=fal"
    )
    # Providers with fixed choices have no such hint.
    assert "for this image" not in preview(
        owner_client, "size=a.png|1000|1000|9|PNG&provider=local"
    )


# --- 9: the sticky bar's button ----------------------------------------------------------------
def button(html):
    return html.split('id="submit-state"')[1].split("</span>\n")[0]


def test_the_bar_says_how_many_jobs_and_what_they_cost(owner_client, real_pixazo):
    html = preview(
        owner_client,
        "size=a.png|1000|1000|9|PNG&size=b.png|900|900|9|PNG&provider=pixazo&provider=local",
        **HTMX,
    )
    assert 'hx-swap-oob="true"' in html.split('id="submit-state"')[1][:40]
    assert ">Upscale 4 jobs · $0.14</button>" in button(html)
    assert "disabled" not in button(html)


@pytest.mark.parametrize(
    "query,text",
    [
        ("size=a.png|500|500|9|PNG&provider=apixo", ">Upscale 1 job · sandbox, not billed<"),
        ("size=a.png|500|500|9|PNG&provider=local", ">Upscale 1 job · free<"),
    ],
)
def test_the_bar_says_sandbox_or_free(owner_client, query, text):
    assert text in button(preview(owner_client, query, **HTMX))


@pytest.mark.parametrize(
    "query,why",
    [
        ("provider=local", "Add images first."),
        ("size=a.png|500|500|9|PNG", "Pick a provider."),
        ("size=a.png|40|30|9|PNG&provider=local", "Fix the refused lines first."),
    ],
)
def test_the_bar_is_off_and_says_why_when_the_submit_would_refuse(owner_client, query, why):
    bar = button(preview(owner_client, query, **HTMX))
    assert ">Upscale</button>" in bar and "disabled" in bar and why in bar


def test_the_page_has_the_bar_with_team_and_button(owner_client, team, other_team, owner):
    from billing.models import Membership

    Membership.objects.create(team=other_team, user=owner)
    page = owner_client.get("/").content.decode()
    bar = page.split('<div class="submit-bar">')[1].split("</div>")[0]
    assert '<select name="team">' in bar and 'id="submit-button"' in bar
    assert "hx-swap-oob" not in bar  # only the preview's answers swap it


def test_provider_descriptions_are_plain_words(owner_client):
    page = owner_client.get("/").content.decode()
    for jargon in ("philz1337x", "Lanczos", "clarityai", "GAN model", "output megapixels"):
        assert jargon not in page


# --- 16: saved presets --------------------------------------------------------------------------
PRINT = {
    "preset_name": "Print",
    "provider": ["pixazo", "apixo"],
    "pixazo-scale": "4",
    "apixo-resolution": "8k",
    "apixo-output_format": "png",
}


def save(client, team, **data):
    return client.post("/upload/presets/save/", {"team": team.pk, **PRINT, **data}, **HTMX)


def test_a_member_saves_a_preset_for_the_team(client, team, teammate):
    client.force_login(teammate)
    response = save(client, team)
    assert response.status_code == 200
    preset = Preset.objects.get()
    assert (preset.team, preset.name, preset.created_by) == (team, "Print", teammate)
    assert preset.choices == [
        ["pixazo", {"scale": 4}],
        ["apixo", {"resolution": "8k", "output_format": "png"}],
    ]
    assert "Saved “Print” for Studio." in response.content.decode()
    assert f'<option value="{preset.pk}" selected>Print</option>' in response.content.decode()


def test_the_upload_page_lists_the_teams_presets_only(owner_client, team, other_team):
    Preset.objects.create(team=team, name="Web", choices=[["local", {"scale": 2}]])
    Preset.objects.create(team=other_team, name="Theirs", choices=[["local", {"scale": 2}]])
    page = owner_client.get("/").content.decode()
    assert ">Web</option>" in page and "Theirs" not in page


def test_applying_a_preset_fills_the_panels(owner_client, team):
    preset = Preset.objects.create(
        team=team, name="Print", choices=[["pixazo", {"scale": 4}], ["apixo", {"resolution": "8k"}]]
    )
    response = owner_client.get(f"/upload/presets/apply/?preset={preset.pk}", **HTMX)
    assert response.status_code == 200 and response["HX-Trigger"] == "preset-applied"
    html = response.content.decode()
    assert 'id="provider-panels"' in html
    assert 'value="pixazo" checked' in html and 'value="apixo" checked' in html
    assert 'value="local" checked' not in html
    pixazo = html.split('name="pixazo-scale"')[1].split("</select>")[0]
    assert '<option value="4" selected>' in pixazo
    apixo = html.split('name="apixo-resolution"')[1].split("</select>")[0]
    assert '<option value="8k" selected>' in apixo


def test_the_same_name_is_refused_until_replace_is_asked(owner_client, team):
    save(owner_client, team)
    response = save(owner_client, team, provider="local", **{"local-scale": "3"})
    assert response.status_code == 422
    html = response.content.decode()
    assert "Studio already has a preset called “Print”." in html and 'id="preset-replace"' in html
    assert Preset.objects.get().choices[0][0] == "pixazo"
    response = save(owner_client, team, provider="local", replace="1", **{"local-scale": "3"})
    assert response.status_code == 200
    assert Preset.objects.get().choices == [["local", {"scale": 3}]]


@pytest.mark.parametrize(
    "data,words",
    [
        ({"preset_name": "   "}, "Give the preset a name."),
        ({"preset_name": "x" * 61}, "up to 60 characters"),
        ({"provider": []}, "Pick at least one provider."),
        ({"provider": "pixazo", "pixazo-scale": "5"}, "Scale '5' is not offered"),
    ],
)
def test_a_bad_preset_is_refused_in_words(owner_client, team, data, words):
    response = save(owner_client, team, **data)
    assert response.status_code == 422
    assert words in html_text.unescape(response.content.decode())
    assert not Preset.objects.exists()


def test_a_preset_is_saved_only_for_ones_own_team(client, team, outsider):
    client.force_login(outsider)
    response = save(client, team)  # carol is not in Studio
    assert response.status_code == 422
    assert "Pick one of your teams." in response.content.decode()
    assert not Preset.objects.exists()


def test_deleting_a_preset(owner_client, team):
    preset = Preset.objects.create(team=team, name="Web", choices=[["local", {"scale": 2}]])
    response = owner_client.post("/upload/presets/delete/", {"preset": preset.pk}, **HTMX)
    assert response.status_code == 200 and "Deleted “Web”." in response.content.decode()
    assert not Preset.objects.exists()


def test_other_teams_presets_do_not_exist(client, team, outsider):
    preset = Preset.objects.create(team=team, name="Web", choices=[["local", {"scale": 2}]])
    client.force_login(outsider)
    assert client.get(f"/upload/presets/apply/?preset={preset.pk}").status_code == 404
    assert client.post("/upload/presets/delete/", {"preset": preset.pk}).status_code == 404
    assert client.get("/upload/presets/apply/?preset=abc").status_code == 404
    assert Preset.objects.exists()


def test_preset_views_take_only_their_method(owner_client):
    assert owner_client.get("/upload/presets/save/").status_code == 405
    assert owner_client.get("/upload/presets/delete/").status_code == 405
    assert owner_client.post("/upload/presets/apply/").status_code == 405
