"""Money as text: one function (billing/money.py) behind every page, filter and export."""

import re
from decimal import Decimal
from unittest import mock

import pytest
from django.template import Context, Template

from billing import money
from jobs import intake, tasks
from tests.images import upload

D = Decimal


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (D("0.07"), "$0.07"),
        (D("0.0700"), "$0.07"),
        (D("12.5"), "$12.50"),
        (D("0.0160"), "$0.016"),
        (D("0.3720"), "$0.372"),
        (D("0.3725"), "$0.3725"),
        (D("0.00004"), "$0.00"),  # below what the ledger keeps: nothing
        (1234.5, "$1,234.50"),
        (D("1234567.891"), "$1,234,567.891"),
        ("0.12", "$0.12"),
        (D("-0.02"), "-$0.02"),
        (D("-0.0160"), "-$0.016"),
        (0, "$0.00"),
        (D("0.0000"), "$0.00"),
        (None, "—"),
        ("not money", "—"),
    ],
)
def test_amounts_read_as_dollars_and_cents(amount, text):
    assert money.usd(amount) == text


@pytest.mark.parametrize(
    ("amount", "text"),
    [(0, "free"), (D("0.0000"), "free"), (D("0.0160"), "$0.016"), (None, "—")],
)
def test_a_price_of_nothing_is_free(amount, text):
    assert money.price(amount) == text


@pytest.mark.parametrize(
    ("amount", "text"),
    [(D("0.016"), "0.0160"), (D("-0.02"), "-0.0200"), (0, "0.0000"), (None, "")],
)
def test_machines_get_four_exact_places(amount, text):
    assert money.exact(amount) == text


def test_the_template_filters_use_the_same_rule():
    html = Template(
        "{% load jobs_tags %}{{ a|usd }} {{ b|usd }} {{ b|money }} {{ c|money }} {{ d|usd }}"
    ).render(Context({"a": D("0.0160"), "b": D("0"), "c": D("1234.5"), "d": D("0.3720")}))
    assert html == "$0.016 free $0.00 $1,234.50 $0.372"


# What no page may show: the words of the issue, or four places ending in a zero.
BAD_AMOUNT = re.compile(r"\$\d[\d,]*\.\d{3}0\b")


def assert_plain(html: str):
    assert "would-be" not in html.lower()
    assert "$0.0000" not in html
    assert not BAD_AMOUNT.search(html), BAD_AMOUNT.search(html).group()


def test_the_job_pages_say_free_and_not_billed(owner_client, make_job, owner, team):
    free = make_job(owner, team, name="free.png")
    with mock.patch.object(tasks, "enqueue_submit"):
        (sandbox,) = intake.submit_uploads(
            user=owner, team=team, files=[upload("q.png")], choices=[("pixazo", {})]
        )
    history = owner_client.get("/jobs/").content.decode()
    assert_plain(history)
    assert "sandbox - not billed" in history.split(f'id="job-{sandbox.pk}"')[1].split("</tr>")[0]
    for job in (free, sandbox):
        assert_plain(owner_client.get(f"/jobs/{job.pk}/").content.decode())
    page = owner_client.get(f"/jobs/{free.pk}/").content.decode()
    assert "quoted free." in page and "quoted $0.0000" not in page
    card = owner_client.get(f"/jobs/{sandbox.pk}/").content.decode().split('id="cost"')[1]
    assert "Sandbox - not billed" in card


def test_a_canceled_job_says_it_was_not_charged(owner_client, owner, team):
    with mock.patch.object(tasks, "enqueue_submit"):
        (job,) = intake.submit_uploads(
            user=owner, team=team, files=[upload("c.png")], choices=[("pixazo", {})]
        )
    assert owner_client.post(f"/jobs/{job.pk}/cancel/").status_code in (200, 302)
    job.refresh_from_db()
    assert job.state == "canceled"
    card = owner_client.get(f"/jobs/{job.pk}/").content.decode().split('id="cost"')[1]
    card = card.split("</section>")[0]
    assert "Not charged: the job was canceled and nothing was billed." in card
    assert "None:" not in card
