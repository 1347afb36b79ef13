"""Spend review: what was charged, to which team, by whom, through which provider, when.

Plain functions over the ledger's charge rows (charges and corrections): the figures
from their daily rollups (billing/rollups.py, kept in the transaction of each row), the
list from the rows themselves. Who may look: staff review every team, a manager the
teams they manage, a plain member nothing. Dates are calendar days in UTC, like budgets.

Sandbox charges are what a job *would* have cost with a real provider. They are never
mixed into real spend: every total carries them in a column of their own, and they only
appear in the breakdowns, the chart, the list and the export when asked for.

Possibly billed jobs (billing.exposure: a provider may have charged for work we could not
finish) are not spend yet: their open holds are shown apart, dated by the hold (when the
job was handed over), and exported as rows of their own kind, until an admin resolves
them.
"""

import datetime
import heapq
from dataclasses import dataclass, replace
from decimal import Decimal
from urllib.parse import urlencode

from django import forms
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncMonth

from billing import ledger, money
from billing.models import DailySpend, LedgerEntry, Membership, OpenHold, Team

UTC = datetime.UTC
ZERO = Decimal("0.0000")
CHARGE_KINDS = (LedgerEntry.Kind.CHARGE, LedgerEntry.Kind.CORRECTION)
# The open hold of a job a provider may have billed (resolving it releases the hold).
POSSIBLY_BILLED = Q(kind=LedgerEntry.Kind.HOLD, job__billing_status=ledger.POSSIBLY_BILLED)
MAX_CHART_DAYS = 400  # a longer range charts only the days that had spend

REAL = Sum("amount", filter=Q(sandbox=False), default=ZERO)
WOULD_BE = Sum("amount", filter=Q(sandbox=True), default=ZERO)
SPLIT = {
    "real": REAL,
    "would_be": WOULD_BE,
    "real_count": Count("pk", filter=Q(sandbox=False)),
    "would_be_count": Count("pk", filter=Q(sandbox=True)),
}


# --- Who may look ---------------------------------------------------------------------


def can_review(user) -> bool:
    """Staff, or a manager of at least one team. Remembered on the user object, so the
    navigation bar asks the database at most once per request."""
    if not user.is_authenticated:
        return False
    if user.is_staff:
        return True
    cached = getattr(user, "_can_review_spend", None)
    if cached is None:
        cached = Membership.objects.filter(user=user, role=Membership.Role.MANAGER).exists()
        user._can_review_spend = cached
    return cached


def visible_teams(user) -> QuerySet:
    """The teams whose spend the user may review."""
    if not user.is_authenticated:
        return Team.objects.none()
    if user.is_staff:
        return Team.objects.all()
    return Team.objects.filter(
        memberships__user=user, memberships__role=Membership.Role.MANAGER
    ).distinct()


# --- Filters --------------------------------------------------------------------------


def this_month() -> tuple[datetime.date, datetime.date]:
    start = ledger.month_start()
    return start.date(), (ledger.next_month(start) - datetime.timedelta(days=1)).date()


@dataclass(frozen=True)
class Filters:
    since: datetime.date
    until: datetime.date
    team: Team | None = None
    provider: str = ""
    include_sandbox: bool = False

    @classmethod
    def default(cls, **kwargs) -> "Filters":
        since, until = this_month()
        return cls(since=since, until=until, **kwargs)

    @property
    def start(self) -> datetime.datetime:
        return datetime.datetime.combine(self.since, datetime.time(), UTC)

    @property
    def end(self) -> datetime.datetime:
        """Exclusive: midnight UTC after `until`."""
        return datetime.datetime.combine(
            self.until + datetime.timedelta(days=1), datetime.time(), UTC
        )

    def query(self) -> str:
        """The filter as a query string, for links (pages, export)."""
        params = {"since": self.since.isoformat(), "until": self.until.isoformat()}
        if self.team:
            params["team"] = self.team.pk
        if self.provider:
            params["provider"] = self.provider
        if self.include_sandbox:
            params["include_sandbox"] = "on"
        return urlencode(params)


class SpendFilter(forms.Form):
    since = forms.DateField(label="From", widget=forms.DateInput({"type": "date"}))
    until = forms.DateField(label="To", widget=forms.DateInput({"type": "date"}))
    team = forms.ModelChoiceField(queryset=None, required=False, empty_label="All teams")
    provider = forms.ChoiceField(required=False)
    include_sandbox = forms.BooleanField(required=False, label="Include sandbox jobs (not billed)")

    def __init__(self, data, *, teams):
        since, until = this_month()
        data = data.copy()
        for name, default in (("since", since), ("until", until)):
            if not data.get(name):
                data[name] = default.isoformat()
        super().__init__(data)
        from jobs.providers import provider_choices

        self.fields["team"].queryset = teams
        self.fields["provider"].choices = [("", "Any provider"), *provider_choices()]

    def clean_until(self):
        until = self.cleaned_data["until"]
        if until >= datetime.date.max:
            raise forms.ValidationError("Pick an earlier date.")
        return until

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            self.add_error("until", "The end of the range is before its start.")
        return data

    @property
    def unknown_team(self) -> bool:
        """A team id the user may not see (or that does not exist): the view says 404."""
        return self.has_error("team")

    def filters(self) -> Filters:
        """What to show: the valid fields as given; this month if the range is wrong."""
        self.is_valid()
        data = self.cleaned_data
        fallback = Filters.default()
        since, until = data.get("since"), data.get("until")
        if not since or not until:  # a bad or reversed range (explained): this month
            since, until = fallback.since, fallback.until
        return Filters(
            since=since,
            until=until,
            team=data.get("team"),
            provider=data.get("provider") or "",
            include_sandbox=bool(data.get("include_sandbox")),
        )


# --- Querysets ------------------------------------------------------------------------


def _scoped(rows: QuerySet, user, f: Filters) -> QuerySet:
    """Rows of the user's visible teams in the filter's range, team and provider."""
    return _teams_and_provider(rows.filter(created_at__gte=f.start, created_at__lt=f.end), user, f)


def _teams_and_provider(rows: QuerySet, user, f: Filters) -> QuerySet:
    """Ledger rows or rollup cells: of the user's visible teams, the filter's team and
    provider."""
    if not user.is_staff:
        rows = rows.filter(team__in=visible_teams(user))
    if f.team:
        rows = rows.filter(team=f.team)
    if f.provider:
        rows = rows.filter(provider=f.provider)
    return rows


def _shown(rows: QuerySet, f: Filters) -> QuerySet:
    return rows if f.include_sandbox else rows.filter(sandbox=False)


def all_charges(user, f: Filters) -> QuerySet:
    """Charge rows (real and sandbox) of the user's visible teams in the filter's range."""
    return _scoped(LedgerEntry.objects.filter(kind__in=CHARGE_KINDS), user, f)


def charges(user, f: Filters) -> QuerySet:
    """The charges the report shows: sandbox ones only when the filter asks for them
    (ledger rows: the page's list; the figures come from `spend_cells`)."""
    return _shown(all_charges(user, f), f)


def all_spend(user, f: Filters) -> QuerySet:
    """The daily rollup cells (billing.models.DailySpend, real and sandbox) of the charges
    `all_charges` lists: the same filters, by UTC day, without reading the ledger."""
    rows = DailySpend.objects.filter(day__gte=f.since, day__lte=f.until)
    return _teams_and_provider(rows, user, f)


def spend_cells(user, f: Filters) -> QuerySet:
    """The cells of the charges the report shows (sandbox ones when asked for)."""
    return _shown(all_spend(user, f), f)


def all_possibly_billed(user, f: Filters) -> QuerySet:
    """Open holds (billing.models.OpenHold, real and sandbox) of possibly billed jobs, by
    the hold's date: a short table, never the ledger."""
    held = OpenHold.objects.filter(job__billing_status=ledger.POSSIBLY_BILLED)
    return _scoped(held, user, f)


def possibly_billed(user, f: Filters) -> QuerySet:
    return _shown(all_possibly_billed(user, f), f)


def possibly_billed_entries(user, f: Filters) -> QuerySet:
    """The hold rows of `possibly_billed`, for the list (found by primary key)."""
    return LedgerEntry.objects.filter(pk__in=possibly_billed(user, f).values("entry"))


def exported(user, f: Filters) -> QuerySet:
    """What the CSV lists: the charges and the possibly billed holds, so its money adds
    up to the page's totals."""
    rows = LedgerEntry.objects.filter(Q(kind__in=CHARGE_KINDS) | POSSIBLY_BILLED)
    return _shown(_scoped(rows, user, f), f)


# --- Totals ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Totals:
    real: Decimal
    would_be: Decimal  # sandbox charges: what real providers would have cost
    real_count: int
    would_be_count: int


def grid(cells: QuerySet) -> list[dict]:
    """Daily cells summed by UTC day, provider and sandbox flag (`amount`, `n` charges), in
    one query: the totals, the provider and day breakdowns and the chart are made from
    it (at most days x providers x 2 rows, however many charges)."""
    return list(
        cells.order_by()
        .values("day", "provider", "sandbox")
        .annotate(amount=Sum("amount"), n=Sum("count"))
        .order_by("day", "provider", "sandbox")
    )


def shown_grid(rows: list[dict], f: Filters) -> list[dict]:
    """The grid of what the report shows: sandbox cells only when the filter asks."""
    return rows if f.include_sandbox else [r for r in rows if not r["sandbox"]]


def _pivot(rows, key) -> dict:
    """{key(row): {real, would_be, real_count, would_be_count}} of grid-like rows."""
    out: dict = {}
    for r in rows:
        row = out.setdefault(
            key(r), {"real": ZERO, "would_be": ZERO, "real_count": 0, "would_be_count": 0}
        )
        if r["sandbox"]:
            row["would_be"] += r["amount"]
            row["would_be_count"] += r["n"]
        else:
            row["real"] += r["amount"]
            row["real_count"] += r["n"]
    return out


def _ranked(rows: list[dict], name: str) -> list[dict]:
    return sorted(rows, key=lambda r: (-r["real"], -r["would_be"], r[name] or ""))


def totals(rows: QuerySet | list) -> Totals:
    """Real spend and sandbox (would-be) spend, apart: of a grid, or of ledger rows or open
    holds in one query."""
    if isinstance(rows, list):
        found = _pivot(rows, lambda r: None).get(None)
        return Totals(**found) if found else Totals(ZERO, ZERO, 0, 0)
    return Totals(**rows.order_by().aggregate(**SPLIT))


def by_provider(rows: list[dict]) -> list[dict]:
    """Spend per provider, of a (shown) grid."""
    from jobs.providers import PROVIDER_CLASSES

    out = [{"provider": p, **row} for p, row in _pivot(rows, lambda r: r["provider"]).items()]
    for row in out:
        cls = PROVIDER_CLASSES.get(row["provider"])
        row["label"] = cls.name if cls else row["provider"]
    return _ranked(out, "provider")


def people_grid(cells: QuerySet) -> list[dict]:
    """Daily cells summed by team, person and sandbox flag (`amount`, `n`), in one query:
    what the team and person breakdowns are made of (a row per person of each team)."""
    return list(
        cells.order_by()
        .values("team", "team__name", "user", "user__username", "sandbox")
        .annotate(amount=Sum("amount"), n=Sum("count"))
        .order_by()
    )


def by_person(rows: QuerySet | list) -> list[dict]:
    """Spend per person, of (shown) daily cells or their people_grid()."""
    if not isinstance(rows, list):
        rows = people_grid(rows)
    found = _pivot(rows, lambda r: (r["user"], r["user__username"]))
    out = [{"user": u, "user__username": name, **row} for (u, name), row in found.items()]
    for row in out:
        row["label"] = row["user__username"] or "(no one)"
    return _ranked(out, "user__username")


def by_team(rows: QuerySet | list, possibly: QuerySet | None = None) -> list[dict]:
    """Spend per team, of (shown) daily cells or their people_grid(); with `possibly`
    (possibly billed holds), each team's possibly billed total beside it
    (`possibly_billed`, real money only), teams with nothing else included."""
    if not isinstance(rows, list):
        rows = people_grid(rows)
    found = _pivot(rows, lambda r: (r["team"], r["team__name"]))
    out = _ranked(
        [{"team": t, "team__name": name, **row} for (t, name), row in found.items()],
        "team__name",
    )
    if possibly is not None:
        exposed = {
            row["team"]: row
            for row in possibly.order_by().values("team", "team__name").annotate(**SPLIT)
        }
        for row in out:
            found = exposed.pop(row["team"], None)
            row["possibly_billed"] = found["real"] if found else ZERO
        for team, found in sorted(exposed.items(), key=lambda kv: kv[1]["team__name"]):
            out.append(
                {
                    "team": team,
                    "team__name": found["team__name"],
                    "real": ZERO,
                    "would_be": ZERO,
                    "real_count": 0,
                    "would_be_count": 0,
                    "possibly_billed": found["real"],
                }
            )
    for row in out:
        row["label"] = row["team__name"]
    return out


def by_day(rows: list[dict]) -> list[dict]:
    """Days that had charges, oldest first, of a (shown) grid; `day` is a date (UTC)."""
    out = [{"day": d, **row} for d, row in sorted(_pivot(rows, lambda r: r["day"]).items())]
    for row in out:
        row["label"] = row["day"]
    return out


class Listing:
    """The charges the list shows, newest first, for a Paginator: counted from the daily
    rollup (`days`: by_day() of the same cells) instead of COUNT(*) over the ledger, and
    sliced by day: the days' counts say which day holds row N, so any page reads from
    that day on (at most one day's rows skipped by OFFSET), however deep it is."""

    def __init__(self, rows: QuerySet, days: list[dict]):
        self.rows = rows.order_by("-created_at", "-pk")
        self.days = [(d["day"], d["real_count"] + d["would_be_count"]) for d in days]

    def count(self) -> int:
        return sum(n for _, n in self.days)

    def __len__(self) -> int:
        return self.count()

    def __getitem__(self, which: slice) -> list:
        start, stop = which.start or 0, which.stop
        newer = 0  # rows on days newer than the one holding row `start`
        for day, n in reversed(self.days):
            if newer + n > start:
                end = datetime.datetime.combine(
                    day + datetime.timedelta(days=1), datetime.time(), UTC
                )
                rows = self.rows.filter(created_at__lt=end)
                return list(rows[start - newer : None if stop is None else stop - newer])
            newer += n
        return []


def chart_data(rows: list[dict], f: Filters) -> dict:
    """Daily spend stacked by provider, for spend-chart.js, of a (shown) grid: one dataset
    per provider (and, when sandbox rows are shown, one per provider in a separate
    "sandbox" stack). Amounts are strings with four places: exact, and Number() on the
    other side."""
    from jobs.providers import PROVIDER_CLASSES

    amounts: dict[tuple[str, str, datetime.date], Decimal] = {}
    seen_days = set()
    for cell in rows:
        seen_days.add(cell["day"])
        if cell["amount"]:
            stack = "sandbox" if cell["sandbox"] else "real"
            amounts[(stack, cell["provider"], cell["day"])] = cell["amount"]
    span = (f.until - f.since).days + 1
    if span <= MAX_CHART_DAYS:
        days = [f.since + datetime.timedelta(days=n) for n in range(span)]
    else:
        days = sorted(seen_days)
    order = list(PROVIDER_CLASSES)
    present = {(stack, provider) for stack, provider, _ in amounts}
    datasets = []
    for stack in ("real", "sandbox"):
        providers = sorted(
            (p for s, p in present if s == stack),
            key=lambda p: (order.index(p) if p in order else len(order), p),
        )
        for provider in providers:
            cls = PROVIDER_CLASSES.get(provider)
            name = cls.name if cls else provider
            datasets.append(
                {
                    "label": name if stack == "real" else f"{name} (sandbox)",
                    "provider": provider,
                    "stack": stack,
                    "data": [
                        money.exact(amounts.get((stack, provider, day), ZERO)) for day in days
                    ],
                }
            )
    return {
        "days": [day.isoformat() for day in days],
        "providers": order,
        "datasets": datasets,
    }


# --- This month against budget ----------------------------------------------------------


@dataclass(frozen=True)
class BudgetLine:
    use: ledger.Usage

    @property
    def bar(self) -> int:
        """Width of the progress bar in percent (capped; the figures say the rest)."""
        return max(0, min(self.use.percent or 0, 100))

    @property
    def level(self) -> str:
        percent = self.use.percent or 0
        if percent >= 100:
            return "over"
        return "warn" if percent >= min(ledger.WARN_AT) else "ok"

    @property
    def left(self) -> Decimal:
        return max(self.use.left, ZERO)

    @property
    def over_by(self) -> Decimal:
        return max(-self.use.left, ZERO)


def budgets(user) -> list[BudgetLine]:
    """This calendar month (UTC) against budget, per visible team that has a budget
    (whatever range the report shows: budgets are monthly)."""
    teams = visible_teams(user).filter(monthly_budget__isnull=False)
    return [BudgetLine(ledger.usage(t)) for t in teams.order_by("name")]


# --- Files stored ---------------------------------------------------------------------


def stored(user) -> list[dict]:
    """Bytes of inputs and results each visible team has stored now (whatever range the
    report shows), in one aggregate over an index (jobs.retention.stored_bytes)."""
    from jobs import retention

    teams = list(visible_teams(user).order_by("name"))
    found = retention.stored_bytes([t.pk for t in teams])
    return [{"team": t, "bytes": found.get(t.pk, 0)} for t in teams]


# --- Export ---------------------------------------------------------------------------

CSV_HEADER = [
    "date",
    "team",
    "person",
    "provider",
    "job",
    "amount_usd",
    "sandbox",
    "price_book_version",
    "kind",  # charge, correction, or possibly_billed (an open hold an admin will check)
    "explanation",
    # Reused results (jobs/reuse.py) have no ledger row, yet a finance person reconciling
    # this file wants them: a row of kind "reused" per reused job, amount 0 (so the amount
    # column still adds up to spend), with what it would have cost in saved_usd and the
    # job whose result it took in reused_from. Empty on ledger rows.
    "saved_usd",
    "reused_from",
    "kept",  # the job is the result someone chose for its image ("keep this one")
]


def _text(value: str) -> str:
    """Free text as a spreadsheet will not run it: a leading = + - @ is a formula."""
    return f"'{value}" if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def export_rows(rows: QuerySet, chunk_size: int = 5000, reused: QuerySet | None = None):
    """The header, then one list per charge (or possibly billed hold), oldest first,
    fetched in chunks: never all rows in memory at once. Plain tuples (values_list), not
    model instances: at a million rows, building objects was most of the time. With
    `reused` (reused_jobs()), their rows too, merged in by date."""
    yield CSV_HEADER
    ledger_rows = _ledger_rows(rows, chunk_size)
    if reused is None:
        yield from ledger_rows
        return
    yield from heapq.merge(ledger_rows, _reused_rows(reused, chunk_size), key=lambda r: r[0])


def _reused_rows(jobs: QuerySet, chunk_size: int):
    rows = jobs.order_by("created_at", "pk").values_list(
        "created_at",
        "team__name",
        "created_by__username",
        "provider",
        "pk",
        "sandbox",
        "price_book__version",
        "quote_explanation",
        "quoted_amount",
        "reused_from_id",
        "kept",
    )
    for (
        at,
        team,
        person,
        provider,
        job,
        sandbox,
        book,
        text,
        saved,
        original,
        kept,
    ) in rows.iterator(chunk_size=chunk_size):
        yield [
            at.astimezone(UTC).isoformat(timespec="seconds"),
            _text(team),
            _text(person or ""),
            provider,
            job,
            money.exact(ZERO),
            "yes" if sandbox else "no",
            "" if book is None else book,
            "reused",
            _text(text),
            money.exact(saved),
            original,
            "yes" if kept else "no",
        ]


def _ledger_rows(rows: QuerySet, chunk_size: int):
    rows = rows.order_by("created_at", "pk").values_list(
        "created_at",
        "team__name",
        "user__username",
        "provider",
        "job_id",
        "amount",
        "sandbox",
        "price_book__version",
        "kind",
        "explanation",
        "job__kept",
    )
    hold = LedgerEntry.Kind.HOLD
    for at, team, person, provider, job, amount, sandbox, book, kind, text, kept in rows.iterator(
        chunk_size=chunk_size
    ):
        yield [
            at.astimezone(UTC).isoformat(timespec="seconds"),
            _text(team),
            _text(person or ""),
            provider,
            "" if job is None else job,
            money.exact(amount),
            "yes" if sandbox else "no",
            "" if book is None else book,
            ledger.POSSIBLY_BILLED if kind == hold else kind,
            _text(text),
            "",
            "",
            "" if job is None else ("yes" if kept else "no"),
        ]


# --- Saved by reuse ----------------------------------------------------------------------


def reused_jobs(user, f: Filters) -> QuerySet:
    """Reused jobs (jobs/reuse.py: nothing charged, no ledger row) of the user's visible
    teams in the filter's range, team and provider; sandbox ones when asked for."""
    from jobs.models import Job

    jobs = Job.objects.filter(reused_from__isnull=False, state=Job.State.SUCCEEDED)
    return _shown(_scoped(jobs, user, f), f)


@dataclass(frozen=True)
class Saved:
    amount: Decimal
    count: int
    teams: list  # [{"team", "label", "amount", "count"}], by team name
    months: list  # [{"team", "label", "month", "amount", "count"}], by team, then month

    @property
    def several_months(self) -> bool:
        return len({m["month"] for m in self.months}) > 1


def saved_by_reuse(user, f: Filters) -> Saved:
    """What the reused jobs in range would have cost (their quote when they reused), per
    team and per team and calendar month (UTC, like budgets): money not spent, never in
    the ledger."""
    months = [
        {
            "team": r["team"],
            "label": r["team__name"],
            "month": r["month"].date().replace(day=1),
            # Exact to four places: SQLite sums decimals as floats.
            "amount": Decimal(str(r["amount"])).quantize(ZERO),
            "count": r["count"],
        }
        for r in reused_jobs(user, f)
        .order_by()
        .values("team", "team__name", month=TruncMonth("created_at", tzinfo=UTC))
        .annotate(amount=Sum("quoted_amount"), count=Count("pk"))
        .order_by("team__name", "team", "month")
    ]
    teams = {}
    for m in months:
        t = teams.setdefault(
            m["team"], {"team": m["team"], "label": m["label"], "amount": ZERO, "count": 0}
        )
        t["amount"] += m["amount"]
        t["count"] += m["count"]
    teams = list(teams.values())
    total = sum((t["amount"] for t in teams), ZERO)
    return Saved(total, sum(t["count"] for t in teams), teams, months)


def export_filename(f: Filters) -> str:
    return f"spend-{f.since.isoformat()}-to-{f.until.isoformat()}.csv"


def with_sandbox(f: Filters) -> Filters:
    return replace(f, include_sandbox=True)
