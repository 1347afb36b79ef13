"""The spend page in plain words (issue #11, items 7 and 8): provider names, not slugs;
the "show them" link leaves the filter showing sandbox rows, so the next filter keeps
them; amounts as dollars and cents; no "would-be"."""

import html as html_lib
import re

from tests.test_money_format import assert_plain
from tests.test_spend import charge, day, login, spend  # noqa: F401 - the spend fixture

SLUG_CELL = re.compile(r"<td>(pixazo|apixo|fal|ximilar|pixelcut|local)(<| <span)")


def sandbox_box(html: str) -> str:
    return re.search(r'<input type="checkbox" name="include_sandbox"[^>]*>', html).group()


def test_the_show_them_link_ticks_include_sandbox(client, owner, spend):  # noqa: F811
    html = login(client, owner).get("/spend/").content.decode()
    assert "checked" not in sandbox_box(html)
    link = re.search(r'<a href="\?([^"]+)" id="show-sandbox">show them</a>', html)
    assert link, "the link is a plain link: a whole page, its form read from the URL"
    shown = client.get("/spend/?" + html_lib.unescape(link.group(1))).content.decode()
    assert "checked" in sandbox_box(shown)
    assert 'id="charge-' + str(spend["would"].pk) + '"' in shown
    # The next filter, sent by that form as it stands, keeps the sandbox rows.
    narrowed = client.get("/spend/?provider=fal&include_sandbox=on").content.decode()
    assert 'id="charge-' + str(spend["would"].pk) + '"' in narrowed


def test_providers_are_named_not_slugged(client, owner, spend):  # noqa: F811
    login(client, owner)
    for url in ("/spend/?include_sandbox=on", "/spend/?provider=pixazo"):
        html = client.get(url).content.decode()
        found = SLUG_CELL.search(html)
        assert not found, html[found.start() - 300 : found.end() + 100]
    html = client.get("/spend/?include_sandbox=on").content.decode()
    row = html.split(f'id="charge-{spend["sea"].pk}"')[1].split("</tr>")[0]
    assert "<td>Pixazo Crystal</td>" in row
    assert '<option value="pixazo">Pixazo Crystal</option>' in html
    assert "· Pixazo Crystal</div>" in client.get("/spend/?provider=pixazo").content.decode()


def test_the_spend_page_speaks_plainly(client, owner, team, spend):  # noqa: F811
    charge(team, "sub", "0.0160", user=owner, at=day(2))
    charge(team, "sub2", "0.3720", "fal", user=owner, at=day(2), sandbox=True)
    html = login(client, owner).get("/spend/?include_sandbox=on").content.decode()
    assert_plain(html)
    assert "Include sandbox jobs (not billed)" in html
    assert ">$0.016<" in html and ">$0.372<" in html
    assert "sandbox - not billed" in html
