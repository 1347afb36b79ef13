"""Spend review: who may see what, the totals, the range filter, sandbox spend kept apart,
the chart's data and the streaming CSV export."""

import csv
import datetime
import io
import json
import re
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db.models.query import QuerySet

from billing import ledger
from billing.models import LedgerEntry, PriceBook
from jobs import intake
from tests.images import upload

D = Decimal


def start() -> datetime.datetime:
    """This calendar month, UTC: the page's default range. Asked each time, not once at
    import, so a suite that runs across midnight at a month's end stays right."""
    return ledger.month_start()


def day(n: int, hour: int = 12) -> datetime.datetime:
    """A moment in this month (n < 28), possibly later today: the range is the month."""
    return start() + datetime.timedelta(days=n, hours=hour)


def charge(team, key, amount, provider="pixazo", at=None, **fields):
    fields.setdefault("kind", "charge")
    return LedgerEntry.objects.create(
        team=team,
        provider=provider,
        amount=D(amount),
        idempotency_key=key,
        created_at=at or day(1),
        **fields,
    )


def submitted(user, team, provider, name):
    """A job accepted through intake for a priced provider, not run."""
    (job,) = intake.submit_uploads(
        user=user, team=team, files=[upload(name)], choices=[(provider, {})]
    )
    return job


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_user("root", is_staff=True, password="pw-12345")


@pytest.fixture
def spend(make_job, owner, teammate, outsider, team, other_team):
    """Studio: real $0.45 (a free local job run for real, pixazo and apixo charges and a
    correction) and $1.00 of sandbox fal; Agency: real $0.50; plus rows that are not
    charges or not this month."""
    local = make_job(owner, team, name="free.png")
    assert local.state == "succeeded"
    assert LedgerEntry.objects.get(job=local, kind="charge").amount == 0
    pixazo = submitted(owner, team, "pixazo", "sea.png")
    apixo = submitted(teammate, team, "apixo", "sky.png")
    foreign = submitted(outsider, other_team, "apixo", "foreign.png")
    book = PriceBook.objects.filter(provider="pixazo").first()
    rows = {
        "sea": charge(
            team,
            "t1",
            "0.12",
            job=pixazo,
            user=owner,
            at=day(1),
            price_book=book,
            explanation="4-8 MP: $0.12",
        ),
        "sky": charge(team, "t2", "0.05", "apixo", job=apixo, user=teammate, at=day(1, 15)),
        "big": charge(team, "t3", "0.30", user=teammate, at=day(4), price_book=book),
        "fix": charge(
            team,
            "t4",
            "-0.02",
            kind="correction",
            user=owner,
            at=day(4, 18),
            explanation="Refund: =SUM(A1)",
        ),
        "would": charge(team, "t5", "1.00", "fal", user=owner, at=day(4), sandbox=True),
        "foreign": charge(other_team, "t6", "0.50", "apixo", job=foreign, user=outsider, at=day(2)),
        "held": charge(team, "t7", "9.99", kind="hold", user=owner, at=day(3)),
        "old": charge(team, "t8", "7.00", user=owner, at=start() - datetime.timedelta(days=3)),
    }
    return {"local": local, "pixazo": pixazo, "apixo": apixo, **rows}


def login(client, user):
    client.force_login(user)
    return client


def amounts(rows) -> dict:
    return {row["label"]: row["real"] for row in rows}


# --- Who may look ------------------------------------------------------------------------


def test_a_plain_member_is_refused(client, teammate, spend):
    login(client, teammate)
    for url in ("/spend/", "/spend/export.csv"):
        response = client.get(url)
        assert response.status_code == 403
        assert "Only team managers and staff can review spend" in response.content.decode()
    assert ">Spend</a>" not in client.get("/jobs/").content.decode()


def test_signed_out_users_are_sent_to_sign_in(client, db):
    assert client.get("/spend/").status_code == 302
    assert client.get("/spend/export.csv").status_code == 302


def test_a_manager_sees_their_own_team_only(client, owner, other_team, spend):
    login(client, owner)
    response = client.get("/spend/")
    assert response.status_code == 200
    assert amounts(response.context["by_team"]) == {"Studio": D("0.45")}
    assert response.context["totals"].real == D("0.45")
    html = response.content.decode()
    assert "Agency" not in html and "foreign" not in html
    assert '<a href="/spend/" aria-current="page">Spend</a>' in html


@pytest.mark.parametrize("url", ["/spend/", "/spend/export.csv"])
def test_another_teams_id_is_not_found(client, owner, other_team, spend, url):
    login(client, owner)
    assert client.get(f"{url}?team={other_team.pk}").status_code == 404
    assert client.get(f"{url}?team=999999").status_code == 404
    assert client.get(f"{url}?team=nope").status_code == 404


def test_an_outsider_manager_sees_only_agency(client, outsider, team, spend):
    login(client, outsider)
    response = client.get("/spend/")
    assert amounts(response.context["by_team"]) == {"Agency": D("0.50")}
    assert response.context["totals"].real == D("0.50")
    assert response.context["totals"].would_be == 0
    assert "Studio" not in response.content.decode()
    assert client.get(f"/spend/?team={team.pk}").status_code == 404


def test_staff_see_every_team_and_can_pick_one(client, staff, team, spend):
    login(client, staff)
    response = client.get("/spend/")
    assert amounts(response.context["by_team"]) == {"Agency": D("0.50"), "Studio": D("0.45")}
    assert response.context["totals"].real == D("0.95")
    only = client.get(f"/spend/?team={team.pk}")
    assert amounts(only.context["by_team"]) == {"Studio": D("0.45")}
    assert ">Spend</a>" in only.content.decode()


# --- Totals ------------------------------------------------------------------------------


def test_totals_by_provider_person_and_day(client, owner, spend):
    ctx = login(client, owner).get("/spend/").context
    assert amounts(ctx["by_provider"]) == {
        "Pixazo Crystal": D("0.40"),  # 0.12 + 0.30 - 0.02 (a correction)
        "APIXO": D("0.05"),
        "Local (Pillow)": D("0"),
    }
    by_provider = {row["provider"]: row for row in ctx["by_provider"]}
    assert set(by_provider) == {"pixazo", "apixo", "local"}
    assert by_provider["pixazo"]["real"] == D("0.40")
    assert by_provider["pixazo"]["real_count"] == 3
    assert by_provider["apixo"]["real"] == D("0.05")
    assert by_provider["local"]["real"] == D("0")
    assert all(isinstance(row["real"], Decimal) for row in ctx["by_provider"])
    assert amounts(ctx["by_person"]) == {"alice": D("0.10"), "bob": D("0.35")}
    days = {row["day"]: row["real"] for row in ctx["by_day"] if row["real"]}
    assert days == {day(1).date(): D("0.17"), day(4).date(): D("0.28")}
    assert [row["day"] for row in ctx["by_day"]] == sorted(row["day"] for row in ctx["by_day"])
    assert ctx["totals"].real == D("0.45") and ctx["totals"].real_count == 5


def test_the_list_shows_each_charge_with_its_job_and_price_book(client, owner, spend):
    response = login(client, owner).get("/spend/")
    listed = list(response.context["page"].object_list)
    assert {e.idempotency_key for e in listed} >= {"t1", "t2", "t3", "t4"}
    assert not {"t5", "t6", "t7", "t8"} & {e.idempotency_key for e in listed}
    html = response.content.decode()
    row = re.search(rf'<tr id="charge-{spend["sea"].pk}".*?</tr>', html, re.S).group(0)
    assert f'href="/jobs/{spend["pixazo"].pk}/"' in row
    assert "$0.12" in row and "v1" in row and "4-8 MP: $0.12" in row and "alice" in row
    assert "Studio" in row and "Pixazo Crystal" in row  # the name, not the slug


def test_the_list_is_paginated(client, owner, spend, monkeypatch):
    from billing import views

    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    login(client, owner)
    first = client.get("/spend/")
    assert first.context["page"].paginator.num_pages == 3
    second = client.get("/spend/?page=2")
    assert len(second.context["page"].object_list) == 2
    assert "page=3" in second.content.decode()


def budget_block(html, team) -> str:
    found = re.search(
        rf'<div class="budget [^"]+" id="budget-{team.pk}">.*?</div>\s*</div>', html, re.S
    )
    assert found, "no budget line for the team"
    return found.group(0)


def test_this_month_against_budget(client, owner, outsider, team, spend):
    team.monthly_budget = D("100.00")
    team.save()
    # Spent: this month's real charges; held: the open $9.99 hold. Sandbox and last
    # month's charges do not count.
    use = ledger.usage(team)
    assert (use.spent, use.held, use.percent) == (D("0.45"), D("9.99"), 10)
    text = budget_block(login(client, owner).get("/spend/").content.decode(), team)
    assert 'class="budget budget-ok"' in text
    assert "10% of $100.00" in text and "Spent <strong>$0.45</strong>" in text
    assert "held for running jobs $9.99" in text and "left $89.56" in text
    assert '<meter class="meter" min="0" max="100" value="10"' in text
    assert f"resets on {use.resets_at:%b} {use.resets_at.day}, {use.resets_at.year} (UTC)" in text

    # Budgets are a team's business: another team's manager does not see this one.
    client.force_login(outsider)
    assert f'id="budget-{team.pk}"' not in client.get("/spend/").content.decode()


def test_a_team_over_budget_shows_by_how_much(client, owner, team, spend):
    team.monthly_budget = D("10.00")
    team.save()
    text = budget_block(login(client, owner).get("/spend/").content.decode(), team)
    assert 'class="budget budget-over"' in text and "104% of $10.00" in text
    assert "over by $0.44" in text and 'value="100"' in text


def test_teams_without_a_budget_have_no_bar(client, staff, spend):
    html = login(client, staff).get("/spend/").content.decode()
    assert 'class="meter"' not in html
    assert "has a monthly budget" in html


# --- Range and filters -------------------------------------------------------------------


def test_the_default_range_is_this_month_and_a_range_can_be_chosen(client, owner, spend):
    login(client, owner)
    default = client.get("/spend/").context
    assert default["f"].since == start().date()
    assert (
        default["f"].until.month == start().month
        and (default["f"].until + datetime.timedelta(days=1)).day == 1
    )
    last_month = (start() - datetime.timedelta(days=1)).replace(day=1).date()
    wide = client.get(f"/spend/?since={last_month}&until={day(27).date()}").context
    assert wide["totals"].real == D("7.45")
    narrow = client.get(f"/spend/?since={day(4).date()}&until={day(4).date()}").context
    assert narrow["totals"].real == D("0.28")
    assert amounts(narrow["by_person"]) == {"bob": D("0.30"), "alice": D("-0.02")}
    assert narrow["totals"].would_be == D("1.00")


def test_a_reversed_range_is_explained_and_this_month_shown(client, owner, spend):
    response = login(client, owner).get(f"/spend/?since={day(5).date()}&until={day(1).date()}")
    assert response.status_code == 200
    assert "The end of the range is before its start." in response.content.decode()
    assert response.context["f"].since == start().date()
    assert response.context["totals"].real == D("0.45")


@pytest.mark.parametrize(
    "query", ["since=garbage&until=2020-01-10", "since=2020-01-01&until=9999-12-31", "until=x"]
)
def test_a_bad_date_is_explained_and_this_month_shown(client, owner, spend, query):
    response = login(client, owner).get(f"/spend/?{query}")
    assert response.status_code == 200
    assert 'class="alert error"' in response.content.decode()
    assert response.context["f"].since <= response.context["f"].until
    assert client.get(f"/spend/export.csv?{query}").status_code == 200


def test_it_filters_by_provider(client, owner, spend):
    ctx = login(client, owner).get("/spend/?provider=apixo").context
    assert ctx["totals"].real == D("0.05")
    assert [e.idempotency_key for e in ctx["page"].object_list] == ["t2"]


def test_the_report_alone_is_swapped_by_htmx(client, owner, spend):
    response = login(client, owner).get(
        "/spend/?provider=apixo", headers={"HX-Request": "true", "HX-Target": "report"}
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="report">')
    assert "<html" not in html and 'id="spend-data"' in html
    assert 'href="/spend/export.csv?since=' in html and "provider=apixo" in html


# --- Sandbox spend is kept apart ---------------------------------------------------------


def test_sandbox_spend_is_a_separate_total_never_mixed_in(client, owner, spend):
    login(client, owner)
    ctx = client.get("/spend/").context
    assert ctx["totals"].real == D("0.45") and ctx["totals"].would_be == D("1.00")
    assert "fal" not in {row["provider"] for row in ctx["by_provider"]}
    assert "t5" not in {e.idempotency_key for e in ctx["page"].object_list}
    html = client.get("/spend/").content.decode()
    assert re.search(r'id="sandbox-total">\$1\.00<', html)
    assert re.search(r'id="real-total">\$0\.45<', html)

    shown = client.get("/spend/?include_sandbox=on").context
    assert shown["totals"].real == D("0.45")  # still real only
    fal = next(row for row in shown["by_provider"] if row["provider"] == "fal")
    assert fal["real"] == 0 and fal["would_be"] == D("1.00")
    assert amounts(shown["by_team"]) == {"Studio": D("0.45")}
    assert "t5" in {e.idempotency_key for e in shown["page"].object_list}


# --- Chart data --------------------------------------------------------------------------


def chart(html: str) -> dict:
    found = re.search(r'<script id="spend-data" type="application/json">(.*?)</script>', html, re.S)
    assert found, "no chart data on the page"
    return json.loads(found.group(1))


def test_the_chart_data_is_daily_spend_stacked_by_provider(client, owner, spend):
    login(client, owner)
    data = chart(client.get("/spend/").content.decode())
    f = client.get("/spend/").context["f"]
    assert data["days"][0] == start().date().isoformat()
    assert data["days"][-1] == f.until.isoformat()
    assert len(data["days"]) == (f.until - f.since).days + 1
    sets = {d["label"]: d for d in data["datasets"]}
    assert set(sets) == {"Pixazo Crystal", "APIXO"}  # the $0 local job draws nothing
    assert {d["stack"] for d in data["datasets"]} == {"real"}
    pixazo = sets["Pixazo Crystal"]["data"]
    assert pixazo[1] == "0.1200" and pixazo[4] == "0.2800"
    assert sets["APIXO"]["data"][1] == "0.0500"
    assert sum(D(v) for d in data["datasets"] for v in d["data"]) == D("0.45")
    assert 'id="spend-chart"' in client.get("/spend/").content.decode()

    with_sandbox = chart(client.get("/spend/?include_sandbox=on").content.decode())
    fal = next(d for d in with_sandbox["datasets"] if d["provider"] == "fal")
    assert fal["stack"] == "sandbox" and fal["label"] == "fal.ai Crystal (sandbox)"
    assert [d["stack"] for d in with_sandbox["datasets"]] == ["real", "real", "sandbox"]
    assert fal["data"][4] == "1.0000"


def test_an_empty_range_has_no_canvas_but_still_data(client, owner, spend):
    html = login(client, owner).get("/spend/?since=2020-01-01&until=2020-01-31").content.decode()
    assert chart(html)["datasets"] == [] and len(chart(html)["days"]) == 31
    assert 'id="spend-chart"' not in html and "No charges in this range." in html


# --- CSV export --------------------------------------------------------------------------


def test_the_csv_export_streams_one_row_per_charge(client, owner, spend, monkeypatch):
    login(client, owner)
    response = client.get("/spend/export.csv")
    assert response.status_code == 200
    assert response.streaming
    assert not response.has_header("Content-Length")
    assert response["Content-Type"].startswith("text/csv")
    until = client.get("/spend/").context["f"].until
    assert response["Content-Disposition"] == (
        f'attachment; filename="spend-{start().date()}-to-{until}.csv"'
    )

    # Nothing may load the whole result: list()/len() go through _fetch_all, iterator not.
    def refuse(self):
        raise AssertionError("the export loaded a whole queryset")

    monkeypatch.setattr(QuerySet, "_fetch_all", refuse)
    body = b"".join(response.streaming_content).decode()
    monkeypatch.undo()

    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0] == [
        "date",
        "team",
        "person",
        "provider",
        "job",
        "amount_usd",
        "sandbox",
        "price_book_version",
        "kind",
        "explanation",
        "saved_usd",
        "reused_from",
        "kept",
    ]
    local_charge = LedgerEntry.objects.get(job=spend["local"], kind="charge")
    by_key = {
        "t1": [
            day(1).isoformat(timespec="seconds"),
            "Studio",
            "alice",
            "pixazo",
            str(spend["pixazo"].pk),
            "0.1200",
            "no",
            "1",
            "charge",
            "4-8 MP: $0.12",
            "no",
        ],
        "t2": [
            day(1, 15).isoformat(timespec="seconds"),
            "Studio",
            "bob",
            "apixo",
            str(spend["apixo"].pk),
            "0.0500",
            "no",
            "",
            "charge",
            "",
            "no",
        ],
        "t3": [
            day(4).isoformat(timespec="seconds"),
            "Studio",
            "bob",
            "pixazo",
            "",
            "0.3000",
            "no",
            "1",
            "charge",
            "",
            "",
        ],
        "t4": [
            day(4, 18).isoformat(timespec="seconds"),
            "Studio",
            "alice",
            "pixazo",
            "",
            "-0.0200",
            "no",
            "",
            "correction",
            "Refund: =SUM(A1)",
            "",
        ],
    }
    expected = sorted(
        [
            *by_key.items(),
            (
                local_charge.idempotency_key,
                [
                    local_charge.created_at.isoformat(timespec="seconds"),
                    "Studio",
                    "alice",
                    "local",
                    str(spend["local"].pk),
                    "0.0000",
                    "no",
                    str(local_charge.price_book.version),
                    "charge",
                    local_charge.explanation,
                    "no",
                ],
            ),
        ],
        key=lambda kv: kv[1][0],
    )
    # saved_usd and reused_from are for reused jobs' rows (tests/test_reuse.py): empty here.
    assert rows[1:] == [[*row[:-1], "", "", row[-1]] for _, row in expected]
    assert all(row[0].endswith("+00:00") for row in rows[1:])


def test_the_csv_follows_the_filter_and_keeps_sandbox_marked(client, staff, team, spend):
    login(client, staff)
    since, until = day(4).date(), day(4).date()
    response = client.get(
        f"/spend/export.csv?since={since}&until={until}&team={team.pk}&include_sandbox=on"
    )
    assert response["Content-Disposition"] == f'attachment; filename="spend-{since}-to-{until}.csv"'
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    # Oldest first; two charges at the same moment in the order they were written.
    assert [(r[3], r[5], r[6]) for r in rows[1:]] == [
        ("pixazo", "0.3000", "no"),
        ("fal", "1.0000", "yes"),
        ("pixazo", "-0.0200", "no"),
    ]


def test_csv_cells_that_look_like_formulas_are_defused(client, owner, team, spend):
    charge(team, "t9", "0.01", user=owner, at=day(2), explanation="=HYPERLINK(1)")
    login(client, owner)
    body = b"".join(client.get("/spend/export.csv").streaming_content).decode()
    row = next(r for r in csv.reader(io.StringIO(body)) if r[5] == "0.0100")
    assert row[9] == "'=HYPERLINK(1)"  # the explanation column
