"""Budgets across a month's end: an open hold counts until it is charged or released,
whenever that happens; charges count in the month they are written. Issue #8, point 2."""

import contextlib
import datetime
from decimal import Decimal
from unittest import mock

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing import ledger
from billing.models import LedgerEntry, PriceBook, Team
from jobs import intake, lifecycle, tasks
from jobs.models import Job
from tests.images import upload
from tests.rows import bare_job

D = Decimal
UTC = datetime.UTC
FEB = datetime.datetime(2031, 2, 1, tzinfo=UTC)


class Clock:
    """`django.utils.timezone.now` under the test's control: the ledger (which stamps its
    rows with it), the price books and the job rows all read it, so a month's end is
    crossed without waiting."""

    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock(FEB - datetime.timedelta(seconds=1))
    monkeypatch.setattr(timezone, "now", fake)
    return fake


@pytest.fixture
def real_providers(settings, db):
    """apixo at $0.45 and pixelcut at $0.10 a job, both real (keys set), never sent."""
    settings.PROVIDER_SETTINGS = {
        **settings.PROVIDER_SETTINGS,
        "apixo": {"api_key": "k", "base_url": "http://127.0.0.1:9"},
        "pixelcut": {"api_key": "k", "base_url": "http://127.0.0.1:9"},
    }
    since = datetime.datetime(2031, 1, 1, tzinfo=UTC)
    for provider, price in (("apixo", "0.45"), ("pixelcut", "0.10")):
        PriceBook.objects.create(
            provider=provider,
            version=100,
            rule={"kind": "flat", "price": price},
            effective_from=since,
        )
    with mock.patch.object(tasks, "enqueue_submit"):
        yield


def accept(owner, team, provider, n=1) -> list[Job]:
    return intake.submit_uploads(
        user=owner,
        team=team,
        files=[upload(f"{provider}{i}.png") for i in range(n)],
        choices=[(provider, {})],
    )


def test_holds_released_after_midnight_make_no_headroom(clock, real_providers, owner, team):
    """The measured case: two $0.45 holds at 23:59:59 on the last day; after midnight
    one fails (released) and one succeeds (charged $0.45 in February). A $1.00 budget
    then has $0.55 left: 5 of 14 submissions at $0.10 fit (the old month arithmetic made
    'held' -$0.90 and accepted all 14)."""
    team.monthly_budget = D("1.00")
    team.save()
    fails, succeeds = accept(owner, team, "apixo", 2)
    assert ledger.usage(team).held == D("0.90")

    clock.now = FEB + datetime.timedelta(seconds=1)
    assert ledger.usage(team).held == D("0.90")  # still open in the new month
    lifecycle.claim(fails.pk)
    lifecycle.move(
        fails.pk, [Job.State.SUBMITTING], Job.State.RUNNING, "taken", provider_task_id="t"
    )
    lifecycle.fail(fails.pk, [Job.State.RUNNING], "failed", "APIXO could not upscale it.")
    lifecycle.claim(succeeds.pk)
    lifecycle.move(succeeds.pk, [Job.State.SUBMITTING], Job.State.FETCHING, "done")
    lifecycle.move(
        succeeds.pk,
        [Job.State.FETCHING],
        Job.State.SUCCEEDED,
        "stored",
        output_width=2048,
        output_height=1707,
        output_format="JPEG",
    )
    use = ledger.usage(team)
    assert (use.spent, use.held) == (D("0.45"), D("0"))

    accepted = 0
    for _ in range(14):
        with contextlib.suppress(intake.SubmissionRefused):
            accepted += len(accept(owner, team, "pixelcut"))
    assert accepted == 5
    use = ledger.usage(team)
    assert (use.spent, use.held) == (D("0.45"), D("0.50"))
    assert use.spent + use.held <= team.monthly_budget


def test_a_hold_placed_last_month_still_counts_while_open(clock, real_providers, owner, team):
    team.monthly_budget = D("1.00")
    team.save()
    accept(owner, team, "apixo", 2)  # $0.90 held on the last day
    clock.now = FEB + datetime.timedelta(days=3)
    with pytest.raises(intake.SubmissionRefused):
        accept(owner, team, "apixo")  # $0.90 + $0.45 > $1.00, whatever the month
    assert accept(owner, team, "pixelcut")  # $0.90 + $0.10 fits exactly


def test_a_closed_hold_counts_in_no_month(clock, real_providers, owner, team):
    (job,) = accept(owner, team, "apixo")
    clock.now = FEB + datetime.timedelta(hours=1)
    lifecycle.cancel(job, by=owner)  # released in February, held in January
    for at in (FEB - datetime.timedelta(days=1), FEB, FEB + datetime.timedelta(days=40)):
        use = ledger.usage(team, at=at)
        assert use.held == D("0") and use.spent == D("0")


# --- the property ---------------------------------------------------------------------
AMOUNTS = st.decimals(min_value=D("0.01"), max_value=D("0.60"), places=2)
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("hold"), AMOUNTS),
        # charge a share of an open job's hold (0..100%), then release it
        st.tuples(st.just("charge"), st.integers(0, 30), st.integers(0, 100)),
        st.tuples(st.just("release"), st.integers(0, 30)),
        # a few seconds on, or to the last second of the month (the next tick crosses it)
        st.tuples(st.just("tick"), st.sampled_from(["seconds", "month_end", "days"])),
    ),
    max_size=25,
)


def _job(team, amount) -> Job:
    return bare_job(team, provider="apixo", quoted_amount=amount)


def _advance(now, how):
    if how == "seconds":
        return now + datetime.timedelta(seconds=2)
    if how == "days":
        return now + datetime.timedelta(days=9)
    return ledger.next_month(ledger.month_start(now)) - datetime.timedelta(seconds=1)


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=OPERATIONS)
def test_held_is_never_negative_and_the_budget_never_overspent(operations):
    """Random holds, charges, releases and month ends against the real ledger: at every
    step 0 <= held, spent + held <= budget, held is exactly the open holds and spent
    exactly this month's charges."""
    budget = D("1.00")
    clock = Clock(datetime.datetime(2031, 1, 31, 23, 59, 58, tzinfo=UTC))
    with mock.patch.object(timezone, "now", clock), transaction.atomic():
        team = Team.objects.create(name="Property", monthly_budget=budget)
        open_holds: dict[int, Job] = {}
        charged: list[tuple[datetime.datetime, Decimal]] = []
        for op in operations:
            kind = op[0]
            if kind == "hold":
                try:
                    with transaction.atomic():
                        job = _job(team, op[1])
                        ledger.hold(team, [job])  # checks the budget, then holds
                    open_holds[job.pk] = job
                except ledger.OverBudget:
                    pass
            elif kind in ("charge", "release") and open_holds:
                job = list(open_holds.values())[op[1] % len(open_holds)]
                if kind == "charge":
                    amount = (job.quoted_amount * op[2] / 100).quantize(D("0.0001"))
                    assert ledger.charge(job, amount, "test charge")
                    charged.append((clock.now, amount))
                assert ledger.release(job, "test release")
                del open_holds[job.pk]
            elif kind == "tick":
                clock.now = _advance(clock.now, op[1])

            use = ledger.usage(team)
            month = ledger.month_start(clock.now)
            assert use.held >= 0
            assert use.spent + use.held <= budget
            assert use.held == sum((j.quoted_amount for j in open_holds.values()), D(0))
            assert use.spent == sum((a for at, a in charged if at >= month), D(0))
        transaction.set_rollback(True)  # a fresh start for the next example
    assert LedgerEntry.objects.filter(team__name="Property").count() == 0
