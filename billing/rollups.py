"""Rollups of the ledger, kept exact in the transaction that writes each ledger row.

- `DailySpend`: the sum and number of charge rows (charges and corrections) per UTC day,
  team, person, provider and sandbox flag. The spend page and the budgets' "spent" read
  these cells instead of summing the ledger.
- `OpenHold`: one row per hold whose job has no release yet; budgets' "held" and the
  possibly billed figures read it instead of anti-joining the ledger.

`record(entry)` runs right after a ledger row is inserted (LedgerEntry.save(), inside the
same atomic block): a row that was refused (a duplicate idempotency key) changes nothing.
A day's cell is bumped with one `INSERT ... ON CONFLICT DO UPDATE SET amount = amount +
excluded.amount`: atomic on PostgreSQL (a concurrent writer of the same cell waits for the
first one's row lock, then adds to what it committed; never a unique violation) and on
SQLite (writers are serialized). `rebuild()` recomputes both tables from the ledger;
`check()` lists where they differ from a direct sum of it.
"""

import datetime
from decimal import Decimal

from django.db import DEFAULT_DB_ALIAS, connections, router, transaction
from django.db.models import Count, Exists, OuterRef, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from billing.models import DailySpend, LedgerEntry, OpenHold

Kind = LedgerEntry.Kind
CHARGE_KINDS = (Kind.CHARGE, Kind.CORRECTION)  # what spend counts (billing.spend too)
UTC = datetime.UTC


def utc_day(at: datetime.datetime) -> datetime.date:
    """The UTC calendar day of a moment (a naive one is in the default time zone, as
    Django stores it)."""
    at = LedgerEntry._meta.get_field("created_at").to_python(at)  # a string, as saved
    if timezone.is_naive(at):
        at = timezone.make_aware(at, timezone.get_default_timezone())
    return at.astimezone(UTC).date()


def _db(entry) -> str:
    return entry._state.db or router.db_for_write(LedgerEntry) or DEFAULT_DB_ALIAS


def record(entry: LedgerEntry) -> None:
    """Bring the rollups up to date with `entry`, just inserted (same transaction)."""
    using = _db(entry)
    if entry.kind in CHARGE_KINDS:
        _add_spend(entry, using)
    elif entry.kind == Kind.HOLD:
        released = entry.job_id is not None and (
            LedgerEntry.objects.using(using).filter(job_id=entry.job_id, kind=Kind.RELEASE).exists()
        )
        if not released:
            _open(entry, using)
    elif entry.kind == Kind.RELEASE and entry.job_id is not None:
        # A release closes every hold of its job (as usage() always counted them).
        OpenHold.objects.using(using).filter(job_id=entry.job_id).delete()


def _open(entry: LedgerEntry, using: str) -> None:
    OpenHold.objects.using(using).create(
        entry=entry,
        job_id=entry.job_id,
        team_id=entry.team_id,
        provider=entry.provider,
        amount=entry.amount,
        sandbox=entry.sandbox,
        created_at=entry.created_at,
    )


def _add_spend(entry: LedgerEntry, using: str) -> None:
    cell = (utc_day(entry.created_at), entry.team_id, entry.user_id, entry.provider)
    _bump(*cell, bool(entry.sandbox), Decimal(entry.amount), 1, using)


def record_many(entries: list[LedgerEntry], using: str) -> None:
    """`record` for rows inserted together (bulk_create): each day's cell bumped once
    with the rows' sum, not once a row (a 200k-row import is a few hundred statements)."""
    cells: dict[tuple, list] = {}
    for entry in entries:
        if entry.kind in CHARGE_KINDS:
            key = (utc_day(entry.created_at), entry.team_id, entry.user_id, entry.provider)
            cell = cells.setdefault((*key, bool(entry.sandbox)), [Decimal(0), 0])
            cell[0] += Decimal(entry.amount)
            cell[1] += 1
        else:
            record(entry)
    for key, (amount, count) in cells.items():
        _bump(*key, amount, count, using)


def _bump(day, team, user, provider, sandbox, amount: Decimal, count: int, using: str) -> None:
    conn = connections[using]
    field = DailySpend._meta.get_field
    values = {
        "day": day,
        "team": team,
        "user": user,
        "user_key": user or 0,
        "provider": provider,
        "sandbox": sandbox,
        "amount": amount,
        "count": count,
    }
    columns = [field(name).column for name in values]
    params = [field(name).get_db_prep_save(value, conn) for name, value in values.items()]
    q = conn.ops.quote_name
    table = q(DailySpend._meta.db_table)
    amount_col, count_col = q(field("amount").column), q(field("count").column)
    added = f"{table}.{amount_col} + excluded.{amount_col}"
    if conn.vendor == "sqlite":
        added = f"ROUND({added}, 4)"  # SQLite keeps decimals as floats: no drift
    key = ", ".join(q(field(n).column) for n in ("day", "team", "user_key", "provider", "sandbox"))
    sql = (
        f"INSERT INTO {table} ({', '.join(q(c) for c in columns)}) "
        f"VALUES ({', '.join(['%s'] * len(columns))}) "
        f"ON CONFLICT ({key}) DO UPDATE SET {amount_col} = {added}, "
        f"{count_col} = {table}.{count_col} + excluded.{count_col}"
    )
    with conn.cursor() as cursor:
        cursor.execute(sql, params)


# --- Refresh (rows edited in place: tests, hand-made fixes) -----------------------------

ROW_FIELDS = ("pk", "kind", "created_at", "team_id", "user_id", "provider", "sandbox", "job_id")


def refresh(rows: list[dict], using: str = DEFAULT_DB_ALIAS) -> None:
    """Recompute, from the ledger, the cells and open holds that `rows` (ROW_FIELDS of
    ledger rows, as they were and as they are) contribute to."""
    ledger = LedgerEntry.objects.using(using)
    cells = {
        (utc_day(r["created_at"]), r["team_id"], r["user_id"], r["provider"], r["sandbox"])
        for r in rows
        if r["kind"] in CHARGE_KINDS
    }
    for day, team, user, provider, sandbox in cells:
        key = {"team_id": team, "user_id": user, "provider": provider, "sandbox": sandbox}
        DailySpend.objects.using(using).filter(day=day, **key).delete()
        start = datetime.datetime.combine(day, datetime.time(), UTC)
        found = ledger.filter(
            kind__in=CHARGE_KINDS,
            created_at__gte=start,
            created_at__lt=start + datetime.timedelta(days=1),
            **key,
        ).aggregate(total=Sum("amount"), n=Count("pk"))
        if found["n"]:
            DailySpend.objects.using(using).create(
                day=day, user_key=user or 0, amount=found["total"], count=found["n"], **key
            )
    pks = {r["pk"] for r in rows}
    jobs = {r["job_id"] for r in rows if r["job_id"] is not None}
    touched = Q(pk__in=pks) | Q(job_id__in=jobs)
    OpenHold.objects.using(using).filter(Q(entry_id__in=pks) | Q(job_id__in=jobs)).delete()
    released = LedgerEntry.objects.filter(job=OuterRef("job"), kind=Kind.RELEASE)
    for entry in ledger.filter(touched, kind=Kind.HOLD).filter(~Exists(released)):
        _open(entry, using)


# --- Rebuild -----------------------------------------------------------------------------


def _day_sql(vendor: str) -> str:
    if vendor == "postgresql":
        return "(created_at AT TIME ZONE 'UTC')::date"
    if vendor == "sqlite":
        return "date(created_at)"  # stored as UTC text
    raise NotImplementedError(f"rollups support PostgreSQL and SQLite, not {vendor}")


def rebuild_sql(vendor: str) -> list[str]:
    """Statements that empty both rollup tables and fill them from the ledger (also run,
    frozen, by migration 0005's backfill)."""
    total = "SUM(amount)" if vendor == "postgresql" else "ROUND(SUM(amount), 4)"
    day = _day_sql(vendor)
    return [
        "DELETE FROM billing_dailyspend",
        "DELETE FROM billing_openhold",
        f"""INSERT INTO billing_dailyspend
                (day, team_id, user_id, user_key, provider, sandbox, amount, count)
            SELECT {day}, team_id, user_id, COALESCE(user_id, 0), provider, sandbox,
                   {total}, COUNT(*)
            FROM billing_ledgerentry
            WHERE kind IN ('charge', 'correction')
            GROUP BY {day}, team_id, user_id, provider, sandbox""",
        """INSERT INTO billing_openhold
                (entry_id, job_id, team_id, provider, amount, sandbox, created_at)
            SELECT h.id, h.job_id, h.team_id, h.provider, h.amount, h.sandbox, h.created_at
            FROM billing_ledgerentry h
            WHERE h.kind = 'hold' AND NOT EXISTS (
                SELECT 1 FROM billing_ledgerentry r
                WHERE r.job_id = h.job_id AND r.kind = 'release')""",
    ]


def rebuild(using: str | None = None) -> dict:
    """Recompute both rollup tables from the ledger, in one transaction. On PostgreSQL the
    ledger is locked against writers meanwhile (SHARE: reads go on), so no row is counted
    twice or missed; on SQLite writers are serialized anyway. Returns the row counts."""
    using = using or router.db_for_write(DailySpend) or DEFAULT_DB_ALIAS
    conn = connections[using]
    with transaction.atomic(using=using), conn.cursor() as cursor:
        if conn.vendor == "postgresql":
            cursor.execute("LOCK TABLE billing_ledgerentry IN SHARE MODE")
        for sql in rebuild_sql(conn.vendor):
            cursor.execute(sql)
    return {
        "daily_spend": DailySpend.objects.using(using).count(),
        "open_holds": OpenHold.objects.using(using).count(),
    }


# --- Check -------------------------------------------------------------------------------


def ledger_cells(using: str = DEFAULT_DB_ALIAS) -> dict:
    """{(day, team, user, provider, sandbox): (amount, count)} summed from the ledger."""
    rows = (
        LedgerEntry.objects.using(using)
        .filter(kind__in=CHARGE_KINDS)
        .annotate(d=TruncDate("created_at", tzinfo=UTC))
        .order_by()
        .values("d", "team_id", "user_id", "provider", "sandbox")
        .annotate(total=Sum("amount"), n=Count("pk"))
    )
    return {
        (r["d"], r["team_id"], r["user_id"], r["provider"], r["sandbox"]): (r["total"], r["n"])
        for r in rows
    }


def rollup_cells(using: str = DEFAULT_DB_ALIAS) -> dict:
    """The same, from DailySpend (a deleted person's cells fold into "no one")."""
    rows = (
        DailySpend.objects.using(using)
        .order_by()
        .values("day", "team_id", "user_id", "provider", "sandbox")
        .annotate(total=Sum("amount"), n=Sum("count"))
    )
    return {
        (r["day"], r["team_id"], r["user_id"], r["provider"], r["sandbox"]): (r["total"], r["n"])
        for r in rows
    }


def ledger_open_holds(using: str = DEFAULT_DB_ALIAS) -> dict:
    """{hold row id: amount} of holds whose job has no release, from the ledger."""
    released = LedgerEntry.objects.filter(job=OuterRef("job"), kind=Kind.RELEASE)
    rows = LedgerEntry.objects.using(using).filter(kind=Kind.HOLD).filter(~Exists(released))
    return dict(rows.order_by().values_list("pk", "amount"))


def check(using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """Every difference between the rollups and the ledger, in words (none: [])."""
    problems = []
    want, have = ledger_cells(using), rollup_cells(using)
    for key in sorted(set(want) | set(have), key=repr):
        if want.get(key) != have.get(key):
            problems.append(f"daily spend {key}: ledger {want.get(key)}, rollup {have.get(key)}")
    want = ledger_open_holds(using)
    have = dict(OpenHold.objects.using(using).values_list("entry_id", "amount"))
    for key in sorted(set(want) | set(have)):
        if want.get(key) != have.get(key):
            problems.append(f"open hold {key}: ledger {want.get(key)}, rollup {have.get(key)}")
    return problems
