"""A big, realistic database, made fast (runs under Django, from inside.py).

5 teams with budgets, 20 users (one staff member in every team, a manager per team,
members in one or two teams), jobs over the last 90 days across the six providers (most
succeeded, some failed or canceled, a few still running, files of jobs finished over
RETENTION_DAYS ago expired), 4-6 timeline events per job, and the ledger: a hold per job,
a charge and a release per succeeded job, a release per failed or canceled one (possibly
billed jobs keep their hold open), then corrections until the ledger has the rows asked
for, so the spend pages and the CSV export see them all. Amounts come from the shipped
price books.

PostgreSQL: COPY, with the tables' secondary indexes dropped before and built after, and
(as a superuser) foreign keys unchecked while copying (the rows are made consistent).
SQLite: executemany in one transaction per table, noticeably slower.
"""

import datetime as dt
import random
import secrets
import time
import uuid
from contextlib import suppress
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management.color import no_style
from django.db import connection, transaction
from django.utils import timezone

from billing import books
from billing.models import LedgerEntry, Membership, Team
from jobs.imaging import ImageInfo
from jobs.models import Job, JobEvent
from jobs.providers import get_provider

PASSWORD = "bench-password-1"
STAFF, MANAGER = "bench-staff", "bench-manager-1"  # MANAGER manages TEAMS[0] only
TEAMS = [  # name, monthly budget, share of the jobs
    ("Studio", Decimal("2000.00"), 0.35),
    ("Marketing", Decimal("800.00"), 0.25),
    ("Catalogue", None, 0.20),
    ("Research", Decimal("150.00"), 0.12),
    ("Print", Decimal("500.00"), 0.08),
]
PROVIDERS = {  # share of the jobs
    "local": 0.2,
    "apixo": 0.25,
    "fal": 0.15,
    "pixazo": 0.15,
    "pixelcut": 0.1,
    "ximilar": 0.15,
}
SIZES = [
    ("JPEG", 1024, 768),
    ("JPEG", 1920, 1080),
    ("JPEG", 800, 1200),
    ("PNG", 512, 512),
    ("WEBP", 1280, 720),
    ("JPEG", 3000, 2000),
]
# File names are "<word>-<4 digits>.<ext>": one word in 39 per name.
WORDS = " ".join(
    [
        "beach harbour portrait product shoe chair label poster logo sketch scan invoice",
        "garden street mountain forest bridge bottle kitchen office team event stage window",
        "dog cat flower sunset skyline menu card banner cover map plan facade model lamp table",
    ]
).split()
SEARCH_WORD = "sunset"  # what the "search by name" page looks for
EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
DAYS = 90
ACTIVE = 20  # the newest jobs are still running (the live fragments' jobs)
FAILURES = [
    ("upstream_timeout", "The provider did not finish the task in time (Timeout). Run it again."),
    ("rate_limited", "The provider was too busy and gave up on the task. Run it again later."),
    ("input_refused", "The provider could not read this image. Use a JPG, PNG or WebP image."),
]


def run(jobs: int, ledger_rows: int) -> dict:
    rng = random.Random(10)
    took, t0 = {}, time.monotonic()
    people = make_people()
    took["teams and users"] = time.monotonic() - t0
    t = time.monotonic()
    job_rows = make_jobs(rng, people, jobs)
    took["jobs made"] = time.monotonic() - t
    tables = (
        (Job, job_rows),
        (JobEvent, numbered(events_of(rng, job_rows))),
        (LedgerEntry, numbered(ledger_of(rng, job_rows, ledger_rows))),
    )
    with fast_bulk_load([Job, JobEvent, LedgerEntry], took):
        for model, rows in tables:
            t = time.monotonic()
            count = copy(model, rows)
            took[f"{count:,} {model._meta.verbose_name_plural}"] = time.monotonic() - t
    with connection.cursor() as cur:
        for sql in connection.ops.sequence_reset_sql(no_style(), [Job, JobEvent, LedgerEntry]):
            cur.execute(sql)
    rollups = rebuild_rollups(took)
    t = time.monotonic()
    with connection.cursor() as cur:
        cur.execute("ANALYZE")
    took["ANALYZE"] = time.monotonic() - t
    took["total"] = time.monotonic() - t0
    return {"took": took, "rollups": rollups}


def rebuild_rollups(took: dict) -> str:
    """billing.rollups.rebuild(), if the portal has it: COPY wrote no rollup rows."""
    try:
        from billing import rollups
    except ImportError:
        return "none (no billing.rollups)"
    if not hasattr(rollups, "rebuild"):
        return "none (no billing.rollups.rebuild)"
    t = time.monotonic()
    try:
        rollups.rebuild()
    except Exception as exc:  # noqa: BLE001 - report it; the pages are measured anyway
        return f"billing.rollups.rebuild() failed: {exc!r}"
    took["billing.rollups.rebuild()"] = time.monotonic() - t
    return "rebuilt by billing.rollups.rebuild()"


# --- teams, users, memberships ---------------------------------------------------------
def make_people() -> dict:
    """{"teams": [team ids], "members": {team id: [user ids]}} after creating them."""
    User = get_user_model()
    password = make_password(PASSWORD)  # hashed once: 20 users, not 20 slow hashes
    names = [STAFF] + [f"bench-manager-{i}" for i in range(1, 6)]
    names += [f"bench-user-{i:02d}" for i in range(6, 20)]
    users = User.objects.bulk_create(
        [
            User(username=n, password=password, email=f"{n}@example.com", is_staff=n == STAFF)
            for n in names
        ]
    )
    teams = Team.objects.bulk_create(
        [Team(name=name, monthly_budget=budget) for name, budget, _ in TEAMS]
    )
    rows = [(team, users[0], "member") for team in teams]  # staff sees every team
    rows += [(teams[i], users[1 + i], "manager") for i in range(5)]
    for i, user in enumerate(users[6:]):
        rows.append((teams[i % 5], user, "member"))
        if i % 3 == 0:
            rows.append((teams[(i + 2) % 5], user, "member"))
    Membership.objects.bulk_create([Membership(team=t, user=u, role=r) for t, u, r in rows])
    members = {t.pk: [u.pk for team, u, _ in rows if team == t and u != users[0]] for t in teams}
    return {"teams": [t.pk for t in teams], "members": members}


# --- rows ------------------------------------------------------------------------------
def variants() -> dict:
    """(provider, size index) -> what a job of it looks like: options, output size, quote,
    price book. Computed once by the providers' and price books' own code."""
    out = {}
    for slug in PROVIDERS:
        provider = get_provider(slug)
        options = provider.clean_options({})
        book = books.current(slug)
        for i, (fmt, w, h) in enumerate(SIZES):
            info = ImageInfo(fmt, w, h, False, w * h // 4)
            ow, oh = provider.output_size(info, options)
            quote = books.quote_under(book, slug, provider.name, ow, oh, options)
            out[slug, i] = {
                "options": options,
                "out": (ow, oh),
                "amount": quote.amount,
                "explanation": quote.explanation[:300],
                "book": book.pk if book else None,
                "name": provider.name,
                "label": provider.describe(options),
            }
    return out


def make_jobs(rng: random.Random, people: dict, count: int) -> list[dict]:
    """Job rows ({attname: value}, ids 1..count in creation order)."""
    now = timezone.now()
    kinds = variants()
    json_value = _json_adapter()
    keep = dt.timedelta(days=settings.RETENTION_DAYS) if settings.RETENTION_DAYS else None
    starts = sorted(
        now - dt.timedelta(seconds=rng.uniform(600, DAYS * 86400)) for _ in range(count)
    )
    team_weights = [share for *_, share in TEAMS]
    jobs = []
    while len(jobs) < count:  # a batch: 1-8 images dropped together by one person
        size = min(rng.choice((1, 1, 1, 2, 3, 4, 8)), count - len(jobs))
        team = rng.choices(people["teams"], team_weights)[0]
        user = rng.choice(people["members"][team])
        slug = rng.choices(list(PROVIDERS), list(PROVIDERS.values()))[0]
        sandbox = slug != "local" and rng.random() < 0.25
        batch, start = uuid.uuid4(), starts[len(jobs)]
        for k in range(size):
            pk = len(jobs) + 1
            active = count - pk < ACTIVE  # the newest are still at the provider
            created = now - dt.timedelta(seconds=2 * (count - pk + 1)) if active else start
            kind = kinds[slug, rng.randrange(len(SIZES))]
            job = make_job(
                rng, pk, created + dt.timedelta(seconds=0.02 * k), now, kind, keep, active
            )
            job.update(
                id=pk,
                team_id=team,
                created_by_id=user,
                batch=batch,
                provider=slug,
                sandbox=sandbox,
                options=json_value(job["options"]),
            )
            jobs.append(job)
    return jobs


def numbered(rows):
    for n, row in enumerate(rows, 1):
        row["id"] = n
        yield row


def events_of(rng, jobs):
    for job in jobs:
        yield from make_events(rng, job)


def ledger_of(rng, jobs, total: int):
    written = 0
    for job in jobs:
        for row in make_ledger(job):
            written += 1
            yield row
    yield from corrections(rng, jobs, total - written)


def make_job(rng, pk, created, now, kind, keep, active) -> dict:
    fmt, w, h = SIZES[rng.randrange(len(SIZES))]
    ext, key = EXT[fmt], secrets.token_hex(16)
    month = created.strftime("%Y/%m")
    roll = rng.random()
    state = "succeeded" if roll < 0.905 else "failed" if roll < 0.965 else "canceled"
    async_ = kind["name"] != "Local (Pillow)"
    if active:
        state = "running" if async_ else "submitting"
    finished = created + dt.timedelta(seconds=rng.uniform(5, 40) if async_ else rng.uniform(1, 4))
    code, message = rng.choice(FAILURES) if state == "failed" else ("", "")
    ok = state == "succeeded"
    ow, oh = kind["out"]
    expired = not active and keep is not None and finished + keep < now
    return {
        "input_name": f"{rng.choice(WORDS)}-{rng.randrange(10000):04d}.{ext}",
        "input_file": "" if expired else f"inputs/{month}/{key}.{ext}",
        "input_thumb": "" if expired else f"thumbs/{month}/{key}-in.webp",
        "input_format": fmt,
        "input_width": w,
        "input_height": h,
        "input_bytes": w * h // rng.choice((3, 4, 6)),
        "predicted_width": ow,
        "predicted_height": oh,
        "quoted_amount": kind["amount"],
        "quote_explanation": kind["explanation"],
        "price_book_id": kind["book"],
        "options": kind["options"],
        "state": state,
        "output_file": f"results/{month}/{key}.jpg" if ok and not expired else "",
        "output_thumb": f"thumbs/{month}/{key}-out.webp" if ok and not expired else "",
        "output_format": "JPEG" if ok else "",
        "output_width": ow if ok else None,
        "output_height": oh if ok else None,
        "output_bytes": ow * oh // 8 if ok else None,
        "files_expired_at": finished + keep + dt.timedelta(hours=3) if expired else None,
        "provider_task_id": str(uuid.uuid4()) if async_ else "",
        "webhook_token": secrets.token_urlsafe(24),
        "poll_count": rng.randrange(1, 6) if async_ else 0,
        "attempts": 1,
        "error_code": code,
        "error_message": message,
        "billing_status": "possibly_billed" if code == "upstream_timeout" and pk % 40 == 0 else "",
        "created_at": created,
        "enqueued_at": created + dt.timedelta(seconds=0.05),
        "submitted_at": created + dt.timedelta(seconds=0.4),
        "finished_at": None if active else finished,
        "updated_at": created if active else finished,
        "_async": async_,
        "_name": kind["name"],
    }


def make_events(rng, job) -> list[dict]:
    created, finished, state = job["created_at"], job["finished_at"], job["state"]
    at = lambda seconds: created + dt.timedelta(seconds=seconds)  # noqa: E731
    name = job["_name"]
    out = [
        ("queued", created, f"Uploaded {job['input_name']}; quoted ${job['quoted_amount']}."),
        ("submitting", at(0.3), "Handing over to the provider."),
    ]
    if rng.random() < 0.02:
        out.append(("submitting", at(0.6), f"{name} answered 429; trying again in 2 s."))
    if job["_async"]:
        task = job["provider_task_id"]
        out.append(("running", at(0.9), f"{name} accepted the job (task {task})."))
    if state == "succeeded":
        out.append(("fetching", finished - dt.timedelta(seconds=0.6), "Downloading the result."))
        size = f"{job['output_width']}x{job['output_height']}"
        out.append(("succeeded", finished, f"Stored the {size} result."))
    elif state == "failed":
        out.append(("failed", finished, job["error_message"]))
    elif state == "canceled":
        out.append(("canceled", finished, "Canceled by its owner; the provider was asked to stop."))
    return [{"job_id": job["id"], "state": s, "at": t, "detail": d} for s, t, d in out]


def make_ledger(job) -> list[dict]:
    base = {
        "team_id": job["team_id"],
        "job_id": job["id"],
        "user_id": job["created_by_id"],
        "provider": job["provider"],
        "amount": job["quoted_amount"],
        "sandbox": job["sandbox"],
        "price_book_id": job["price_book_id"],
    }
    pk, state, finished = job["id"], job["state"], job["finished_at"]
    rows = [
        {
            **base,
            "kind": "hold",
            "explanation": job["quote_explanation"],
            "idempotency_key": f"hold:{pk}",
            "created_at": job["created_at"],
        }
    ]
    if state == "succeeded":
        rows.append(
            {
                **base,
                "kind": "charge",
                "explanation": job["quote_explanation"],
                "idempotency_key": f"charge:{pk}",
                "created_at": finished,
            }
        )
    if state in Job.FINAL_STATES and job["billing_status"] != "possibly_billed":
        rows.append(
            {
                **base,
                "kind": "release",
                "explanation": f"Hold released: job {state}.",
                "idempotency_key": f"release:{pk}",
                "created_at": finished,
            }
        )
    return rows


def corrections(rng, jobs, count: int):
    """Corrections of succeeded jobs' charges, dated between the job's end and now."""
    now = timezone.now()
    done = [j for j in jobs if j["state"] == "succeeded"]
    amounts = [Decimal(a) for a in ("-0.0100", "0.0050", "-0.0020", "0.0100", "-0.0400")]
    for n in range(max(count, 0)):
        job = rng.choice(done)
        yield {
            "team_id": job["team_id"],
            "job_id": job["id"],
            "user_id": job["created_by_id"],
            "kind": "correction",
            "provider": job["provider"],
            "amount": rng.choice(amounts),
            "sandbox": job["sandbox"],
            "price_book_id": job["price_book_id"],
            "explanation": "Correction: provider credit after a price review.",
            "idempotency_key": f"correction:{job['id']}:{n}",
            "created_at": job["finished_at"] + (now - job["finished_at"]) * rng.random(),
        }


# --- loading ---------------------------------------------------------------------------
def _json_adapter():
    if connection.vendor == "postgresql":
        from psycopg.types.json import Jsonb

        return Jsonb
    return lambda value: value


def copy(model, rows) -> int:
    """Write `rows` ({attname: value}; missing fields take their defaults) to `model`'s
    table: COPY on PostgreSQL, executemany on SQLite."""
    fields = model._meta.concrete_fields
    defaults = {f.attname: f.get_default() for f in fields}
    names = [f.attname for f in fields]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    table = connection.ops.quote_name(model._meta.db_table)
    count = 0

    def tuples():
        nonlocal count
        for row in rows:
            count += 1
            yield tuple(row.get(n, defaults[n]) for n in names)

    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            with cur.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as out:
                for values in tuples():
                    out.write_row(values)
        else:
            marks = ", ".join(["%s"] * len(fields))
            prep = [lambda v, f=f: f.get_db_prep_save(v, connection) for f in fields]
            chunk = []
            for values in tuples():
                chunk.append([p(v) for p, v in zip(prep, values, strict=True)])
                if len(chunk) == 20000:
                    cur.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", chunk)
                    chunk = []
            if chunk:
                cur.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", chunk)
    return count


class fast_bulk_load:
    """One transaction; on PostgreSQL, secondary indexes of `models` dropped for the
    load and built after (timed into `took`), foreign keys unchecked if we may."""

    def __init__(self, models, took: dict):
        self.models, self.took, self.indexes = models, took, []

    def __enter__(self):
        self.atomic = transaction.atomic()
        if connection.vendor != "postgresql":
            self.atomic.__enter__()
            return self
        # Superuser only: skips the per-row foreign key triggers (else they run, slower).
        with connection.cursor() as cur, suppress(Exception):
            cur.execute("SET session_replication_role = replica")
        self.atomic.__enter__()
        tables = [m._meta.db_table for m in self.models]
        with connection.cursor() as cur:
            cur.execute(
                """SELECT i.indexname, i.indexdef FROM pg_indexes i
                   WHERE i.schemaname = current_schema() AND i.tablename = ANY(%s)
                   AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid =
                       (quote_ident(i.schemaname) || '.' || quote_ident(i.indexname))::regclass)""",
                [tables],
            )
            self.indexes = cur.fetchall()
            for name, _ in self.indexes:
                cur.execute(f"DROP INDEX {connection.ops.quote_name(name)}")
        return self

    def __exit__(self, *exc):
        if exc[0] is None and self.indexes:
            t = time.monotonic()
            with connection.cursor() as cur:
                cur.execute("SET maintenance_work_mem = '256MB'")
                for _, definition in self.indexes:
                    cur.execute(definition)
            self.took[f"{len(self.indexes)} indexes rebuilt"] = time.monotonic() - t
        self.atomic.__exit__(*exc)
        if connection.vendor == "postgresql":
            with connection.cursor() as cur:
                cur.execute("RESET session_replication_role")
        return False
