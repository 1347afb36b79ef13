"""Pricing at every edge, the append-only ledger, and budgets that hold under load."""

import datetime
import threading
from decimal import Decimal
from unittest import mock

import pytest
from django.db import connection
from django.utils import timezone

from billing import books, ledger
from billing.models import BudgetWarning, LedgerEntry, PriceBook
from billing.pricing import RULES, price, quote
from jobs import intake, lifecycle, pipeline, tasks
from jobs.models import Job
from tests.images import upload

MP = 1_000_000


def amount(provider, pixels, options=None, width=None):
    width = width or pixels
    return quote(provider, provider, width, pixels // width, options).amount


@pytest.mark.parametrize(
    "pixels,expected",
    [
        (1, "0.07"),
        (4 * MP, "0.07"),
        (4 * MP + 1, "0.12"),
        (8 * MP, "0.12"),
        (8 * MP + 1, "0.23"),
        (16 * MP, "0.23"),
        (16 * MP + 1, "0.45"),
        (100 * MP, "0.45"),
    ],
)
def test_pixazo_brackets_include_their_upper_bound(pixels, expected):
    assert amount("pixazo", pixels, width=1) == Decimal(expected)


@pytest.mark.parametrize(
    "pixels,expected",
    [
        (1, "0.016"),
        (MP, "0.016"),
        (MP + 1, "0.032"),
        (4_194_304, "0.080"),
        (100 * MP, "1.600"),
    ],
)
def test_fal_rounds_megapixels_up(pixels, expected):
    assert amount("fal", pixels, width=1) == Decimal(expected)


@pytest.mark.parametrize(
    "model,pixels,expected",
    [
        ("classic", 4 * MP, "0.02"),
        ("classic", 4 * MP + 1, "0.04"),
        ("classic", 16 * MP + 1, "0.08"),
        ("gan", 4 * MP, "0.04"),
        ("gan", 4 * MP + 1, "0.08"),
        ("gan", 16 * MP + 1, "0.16"),
    ],
)
def test_ximilar_assumed_brackets_by_model(model, pixels, expected):
    q = quote("ximilar", "Ximilar", 1, pixels, {"model_type": model})
    assert q.amount == Decimal(expected) and q.verified is False


@pytest.mark.parametrize("resolution", ["2k", "4k", "8k"])
def test_apixo_is_flat_whatever_the_tier(resolution):
    assert amount("apixo", 64 * MP, {"resolution": resolution}, width=8192) == Decimal("0.01")


def test_pixelcut_is_assumed_and_local_is_free():
    assert quote("pixelcut", "Pixelcut", 100, 100).verified is False
    assert quote("local", "Local", 9000, 9000).amount == Decimal("0")


def test_the_explanation_names_size_bracket_and_price():
    q = quote("pixazo", "Pixazo", 2048, 2048)
    assert q.explanation == "2048x2048 output = 4.19 MP: Pixazo 4-8 MP bracket, $0.12"
    assert q.tier == "4-8 MP" and q.amount == Decimal("0.1200")


def test_money_is_decimal_to_four_places():
    q = price(RULES["fal"], "fal", 3000, 3000)
    assert isinstance(q.amount, Decimal) and q.amount.as_tuple().exponent == -4


def test_the_shipped_price_books_match_the_rules(db):
    for provider in RULES:
        book = books.current(provider)
        assert book.version == 1 and book.rule["kind"] == RULES[provider]["kind"]


def test_a_new_version_prices_from_its_date_and_old_ones_stay(db):
    old = books.current("apixo")
    PriceBook.objects.create(
        provider="apixo",
        version=2,
        rule={"kind": "flat", "price": "0.02"},
        effective_from=timezone.now() - datetime.timedelta(seconds=1),
    )
    assert books.quote("apixo", "APIXO", 10, 10)[0].amount == Decimal("0.02")
    before = timezone.now() - datetime.timedelta(days=1)
    assert books.quote("apixo", "APIXO", 10, 10, at=before)[1] == old
    old.note = "edited"
    with pytest.raises(ValueError, match="never edited"):
        old.save()


# --- the ledger ----------------------------------------------------------------------------
def entries(job):
    return list(LedgerEntry.objects.filter(job=job).order_by("pk").values_list("kind", "amount"))


@pytest.fixture
def priced(settings, owner, team):
    """A priced provider that is not a sandbox (a key is set), and whose submit the tests
    drive by hand: apixo at $0.01 per image."""
    settings.PROVIDER_SETTINGS = {
        **settings.PROVIDER_SETTINGS,
        "apixo": {"api_key": "k", "base_url": "http://127.0.0.1:9"},
    }
    with mock.patch.object(tasks, "enqueue_submit"):
        yield lambda n=1: intake.submit_uploads(
            user=owner,
            team=team,
            files=[upload(f"p{i}.png") for i in range(n)],
            choices=[("apixo", {"resolution": "2k"})],
        )


def finish(job, width=2048, height=1707):
    """Drive a job to success as the pipeline does, with a result of the given size."""
    lifecycle.claim(job.pk)
    lifecycle.move(job.pk, [Job.State.SUBMITTING], Job.State.FETCHING, "done")
    lifecycle.move(
        job.pk,
        [Job.State.FETCHING],
        Job.State.SUCCEEDED,
        "stored",
        output_width=width,
        output_height=height,
        output_format="JPEG",
    )
    job.refresh_from_db()
    return job


def test_accepting_a_job_holds_its_quote(priced):
    (job,) = priced()
    assert entries(job) == [("hold", Decimal("0.0100"))]
    hold = job.ledger.get()
    assert hold.idempotency_key == f"hold:{job.pk}" and hold.sandbox is False
    assert hold.price_book == books.current("apixo")


def test_success_charges_the_quote_and_releases_the_hold(priced):
    (job,) = priced()
    finish(job)
    assert entries(job) == [
        ("hold", Decimal("0.0100")),
        ("charge", Decimal("0.0100")),
        ("release", Decimal("0.0100")),
    ]
    assert job.charge.amount == job.quoted_amount


def test_the_charge_follows_the_actual_size_when_the_prediction_was_wrong(owner, team, settings):
    settings.PROVIDER_SETTINGS = {
        **settings.PROVIDER_SETTINGS,
        "pixazo": {"api_key": "k", "base_url": "http://127.0.0.1:9"},
    }
    with mock.patch.object(tasks, "enqueue_submit"):
        (job,) = intake.submit_uploads(
            user=owner,
            team=team,
            files=[upload(width=1000, height=1000)],
            choices=[("pixazo", {"scale": 2})],
        )
    assert job.quoted_amount == Decimal("0.07")  # 2000x2000 = 4 MP predicted
    finish(job, 2001, 2000)  # the provider returned a little more: over 4 MP
    assert job.charge.amount == Decimal("0.12")
    assert "2001x2000 output = 4.00 MP: Pixazo Crystal 4-8 MP bracket" in job.charge.explanation


def test_failure_and_cancel_release_the_hold(priced):
    failed, canceled = priced(2)
    lifecycle.claim(failed.pk)
    lifecycle.fail(failed.pk, [Job.State.SUBMITTING], "x", "broke")
    lifecycle.cancel(canceled, by=None)
    for job in (failed, canceled):
        assert entries(job) == [("hold", Decimal("0.0100")), ("release", Decimal("0.0100"))]


def test_a_duplicate_finish_is_charged_once(priced):
    (job,) = priced()
    job = finish(job)
    for _ in range(3):  # a retried task, a duplicate webhook, the reconciler
        ledger.settle(job)
    assert ledger.reconcile() == 0
    assert [k for k, _ in entries(job)].count("charge") == 1
    assert [k for k, _ in entries(job)].count("release") == 1


def test_ledger_rows_are_never_edited_or_deleted(priced):
    (job,) = priced()
    row = job.ledger.get()
    row.amount = Decimal("0")
    with pytest.raises(ValueError, match="never edited"):
        row.save()
    with pytest.raises(ValueError, match="never deleted"):
        row.delete()
    assert job.ledger.get().amount == Decimal("0.0100")


def test_the_reconciler_releases_holds_left_by_a_crash(priced):
    (job,) = priced()
    # A crash between the state change and the ledger: the job ended, the hold stayed.
    Job.objects.filter(pk=job.pk).update(state=Job.State.FAILED)
    assert ledger.usage(job.team).held == Decimal("0.01")
    assert pipeline.sweep()["released"] == 1
    assert ledger.usage(job.team).held == Decimal("0")


def test_sandbox_jobs_are_priced_but_kept_apart(owner, team, make_job):
    team.monthly_budget = Decimal("0.01")
    team.save()
    with mock.patch.object(tasks, "enqueue_submit"):
        jobs = intake.submit_uploads(
            user=owner, team=team, files=[upload(), upload()], choices=[("apixo", {})]
        )  # no key: sandbox
    assert all(j.sandbox and j.quoted_amount == Decimal("0.01") for j in jobs)
    assert all(j.ledger.get().sandbox for j in jobs)
    use = ledger.usage(team)
    assert use.spent == use.held == Decimal("0")  # real spend only


# --- budgets ------------------------------------------------------------------------------
def test_an_over_budget_submission_is_refused_before_anything_is_stored(priced, team, settings):
    team.monthly_budget = Decimal("0.02")
    team.save()
    priced(1)
    with pytest.raises(intake.SubmissionRefused) as refused:
        priced(2)
    message = refused.value.errors[0]
    resets = ledger.next_month(ledger.month_start())
    assert message == (
        "This would go over Studio's monthly budget of $0.02: spent $0.00, held for running "
        f"jobs $0.01, this submission $0.02, left $0.01. The budget resets on "
        f"{resets:%Y-%m-%d} (UTC). Ask a manager to raise it, or submit less."
    )
    assert Job.objects.count() == 1
    stored = [p.name for p in (settings.MEDIA_ROOT / "inputs").rglob("*.*")]
    assert len(stored) == 1


def test_the_budget_is_per_calendar_month(priced, team):
    team.monthly_budget = Decimal("0.01")
    team.save()
    (job,) = priced()
    finish(job)
    with pytest.raises(intake.SubmissionRefused):
        priced()
    last_month = ledger.month_start() - datetime.timedelta(days=3)
    LedgerEntry.objects.filter(team=team).update(created_at=last_month)  # test-only rewind
    assert ledger.usage(team).spent == Decimal("0")
    assert ledger.usage(team, at=last_month).spent == Decimal("0.01")
    priced()  # a new month, a fresh budget


def test_warnings_are_emailed_once_per_threshold(
    priced, team, owner, mailoutbox, django_capture_on_commit_callbacks
):
    team.monthly_budget = Decimal("0.02")
    team.save()
    with django_capture_on_commit_callbacks(execute=True):
        priced(1)  # 50%: nothing
        assert mailoutbox == []
        priced(1)  # 100%: both thresholds crossed at once
        (job,) = Job.objects.filter(pk=Job.objects.order_by("pk").first().pk)
        finish(job)  # still 100%: nothing new
    subjects = [m.subject for m in mailoutbox]
    assert subjects == ["Studio has used 100% of its monthly budget"] * 2
    assert mailoutbox[0].to == [owner.email]
    assert BudgetWarning.objects.filter(team=team).count() == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_submissions_never_overspend(settings, owner, team):
    """50 submissions at $0.10 race for a $1.00 budget (20 on SQLite, which queues
    writers instead): exactly 10 are accepted and the ledger holds exactly $1.00."""
    threads_n = 50 if connection.vendor == "postgresql" else 20
    settings.PROVIDER_SETTINGS = {
        **settings.PROVIDER_SETTINGS,
        "apixo": {"api_key": "k", "base_url": "http://127.0.0.1:9"},
    }
    PriceBook.objects.create(
        provider="apixo",
        version=2,
        rule={"kind": "flat", "price": "0.10"},
        effective_from=timezone.now() - datetime.timedelta(seconds=1),
    )
    team.monthly_budget = Decimal("1.00")
    team.save()
    accepted, refused, errors = [], [], []
    start = threading.Barrier(threads_n)

    def submit_one(i):
        try:
            start.wait()
            accepted.extend(
                intake.submit_uploads(
                    user=owner, team=team, files=[upload(f"c{i}.png")], choices=[("apixo", {})]
                )
            )
        except intake.SubmissionRefused:
            refused.append(i)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=submit_one, args=(i,)) for i in range(threads_n)]
    # Patched once around all threads: mock.patch entered and left in many threads at
    # once restores out of order and can leave the mock in place for later tests.
    with mock.patch.object(tasks, "enqueue_submit"):
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert errors == []
    assert len(accepted) == 10 and len(refused) == threads_n - 10
    use = ledger.usage(team)
    assert use.spent + use.held == Decimal("1.00")
    assert LedgerEntry.objects.filter(kind="hold").count() == 10
