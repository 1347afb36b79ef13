"""Files that expire: a job's input, result and their thumbnails are deleted
RETENTION_DAYS after the job finished (0: kept for ever). The row stays, with its
history and cost: `files_expired_at` is set and the four file fields are cleared, so
every page and view sees "no file" and says why instead of breaking.

- Active jobs never lose files: only finished jobs (a final state and `finished_at`)
  older than the cutoff are expired.
- Jobs share inputs (a batch sent to several providers, "run again"): a stored input is
  deleted only when no job that is not expired still uses it. A shared input that stays
  passes its byte count (`input_owner`) to a job that keeps it.
- Jobs share results too: a reused job (jobs/reuse.py) points at the result of the job it
  reuses. A result (and its thumbnail) is deleted only when no job that is not expired
  still uses it (`outputs_kept`).
- Batches, oldest finish first, each marked in its own short transaction after its
  files were deleted (never across the storage calls, which may be HTTP to S3). A purge
  killed midway leaves jobs whose files are (partly) gone but unmarked: the next purge
  deletes them again (a file already gone is fine) and marks them.
"""

import datetime
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from jobs.models import Heartbeat, Job

log = logging.getLogger(__name__)
LAST_PURGE = "purge"  # the Heartbeat row saying when a purge last ran, and what it did
SCHEDULE = "purge-expired-files"  # the daily django-q2 schedule (migration 0011)
COLUMNS = (
    "pk",
    "team_id",
    "finished_at",
    "input_owner",
    "input_file",
    "input_thumb",
    "input_bytes",
    "output_file",
    "output_thumb",
    "output_bytes",
    "input_sha256",
)


def cutoff(now: datetime.datetime) -> datetime.datetime | None:
    """Jobs that finished before this lose their files; None: files are kept for ever."""
    days = settings.RETENTION_DAYS
    return now - datetime.timedelta(days=days) if days > 0 else None


def _past(cut: datetime.datetime) -> Q:
    """Finished before the cutoff, whether its files were deleted yet or not. A final job
    with no finish time does not match: when in doubt, a job keeps its files."""
    return Q(state__in=Job.FINAL_STATES, finished_at__lt=cut)


def is_past_retention(job: Job, now: datetime.datetime | None = None) -> bool:
    cut = cutoff(now or timezone.now())
    return bool(
        job.files_expired_at
        or (cut and job.state in Job.FINAL_STATES and job.finished_at and job.finished_at < cut)
    )


def expired_jobs(now: datetime.datetime) -> QuerySet:
    """Jobs whose files are due for deletion, oldest finish first (index
    job_files_to_expire)."""
    cut = cutoff(now)
    if cut is None:
        return Job.objects.none()
    return Job.objects.filter(_past(cut), files_expired_at__isnull=True).order_by(
        "finished_at", "pk"
    )


@dataclass
class Tally:
    jobs: int = 0
    files: int = 0
    bytes: int = 0  # inputs and results; thumbnails (a few KB each) are not counted


@dataclass(frozen=True)
class Doomed:
    """What one job gives up: the files deleted with it and their bytes."""

    job_id: int
    team_id: int
    finished_at: datetime.datetime
    files: tuple[str, ...]
    bytes: int


@dataclass
class Report(Tally):
    dry_run: bool = False
    batches: int = 0
    failed: int = 0  # jobs whose files the storage refused to delete: left for next time
    more: bool = False  # stopped at the time limit with jobs left
    teams: dict[int, Tally] = field(default_factory=dict)

    def add(self, doomed: Doomed) -> None:
        for tally in (self, self.teams.setdefault(doomed.team_id, Tally())):
            tally.jobs += 1
            tally.files += len(doomed.files)
            tally.bytes += doomed.bytes

    def as_dict(self) -> dict:
        summary = asdict(self)
        summary["teams"] = {str(team): asdict(t) for team, t in self.teams.items()}
        return summary


def _plan(rows: list[dict], cut: datetime.datetime, gone: set[str]):
    """Which files each job of a batch gives up, and which shared inputs stay (used by
    a job that is not past retention). `gone`: inputs this purge already deleted."""
    kept = inputs_kept({row["input_file"] for row in rows if row["input_file"]}, _past(cut))
    results_kept = outputs_kept(rows, _past(cut))
    doomed, handed_on = [], set()
    for row in rows:
        files = [n for n in (row["output_file"], row["output_thumb"]) if n]
        size = (row["output_bytes"] or 0) if row["output_file"] else 0
        if row["output_file"] in results_kept or row["output_file"] in gone:
            size = 0  # a shared result: kept for a job that uses it, or counted once
        files = [n for n in files if n not in results_kept and n not in gone]
        gone.update(n for n in files if row["input_sha256"])  # may be shared: once
        name = row["input_file"]
        if name in kept:
            if row["input_owner"]:
                handed_on.add(name)
        elif name and name not in gone:
            gone.add(name)  # two jobs of one batch may share it: deleted, counted, once
            files += [n for n in (name, row["input_thumb"]) if n]
            size += row["input_bytes"]
        doomed.append(Doomed(row["pk"], row["team_id"], row["finished_at"], tuple(files), size))
    return doomed, handed_on


# Shared inputs, for the purge and for a person deleting a job's files (jobs/deletion.py):
# `leaving` matches the jobs that are giving up their files now.
def inputs_kept(names, leaving: Q) -> set[str]:
    """Which of these stored inputs a job that keeps its files still uses."""
    return set(
        Job.objects.filter(input_file__in=names)
        .exclude(leaving)
        .order_by()
        .values_list("input_file", flat=True)
        .distinct()
    )


def outputs_kept(rows, leaving: Q) -> set[str]:
    """Which of these jobs' results and result thumbnails (rows: dicts with team_id,
    input_sha256, output_file, output_thumb) a job that keeps its files still uses. Jobs
    sharing a result are all succeeded jobs of one team with the same input content, so
    the search goes through the index job_same_input; jobs without a content hash (made
    before it was recorded) never share one."""
    rows = [r for r in rows if r["input_sha256"] and r["output_file"]]
    names = {n for r in rows for n in (r["output_file"], r["output_thumb"]) if n}
    if not names:
        return set()
    users = (
        Job.objects.filter(
            team_id__in={r["team_id"] for r in rows},
            input_sha256__in={r["input_sha256"] for r in rows},
            state=Job.State.SUCCEEDED,
        )
        .filter(Q(output_file__in=names) | Q(output_thumb__in=names))
        .exclude(leaving)
        .order_by()
        .values_list("output_file", "output_thumb")
    )
    return {name for pair in users for name in pair if name in names}


def hand_on(name: str, leaving: Q) -> None:
    """A shared input that stays gets an owner among the jobs that keep it (so it is
    still counted once), unless one of them already is. Inside the caller's transaction."""
    users = Job.objects.filter(input_file=name).exclude(leaving)
    if not users.filter(input_owner=True).exists():
        heir = users.order_by("-pk").values_list("pk", flat=True).first()
        Job.objects.filter(pk=heir).update(input_owner=True)


def _delete(doomed: Doomed) -> bool:
    try:
        for name in doomed.files:
            default_storage.delete(name)  # a file already gone is fine (local and S3)
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the purge
        log.warning("purge: job %s kept its files: %s", doomed.job_id, exc.__class__.__name__)
        return False
    return True


def _mark(now, job_ids: list[int], handed_on: set[str], cut) -> None:
    """One transaction per batch: the rows say their files are gone, and each shared
    input that stays gets an owner among the jobs that keep it (so it is still counted)."""
    with transaction.atomic():
        Job.objects.filter(pk__in=job_ids, files_expired_at__isnull=True).update(
            files_expired_at=now, input_file="", input_thumb="", output_file="", output_thumb=""
        )
        for name in handed_on:
            hand_on(name, _past(cut))


def purge(
    now: datetime.datetime | None = None,
    batch: int = 500,
    dry_run: bool = False,
    time_limit: float | None = None,
    each: Callable[[Doomed], None] | None = None,
) -> Report:
    """Delete the files of the jobs past retention as of `now`, `batch` jobs at a time,
    until none is left (or `time_limit` seconds have passed: `more` says so). `each` is
    told about every job (the command's listing). A dry run deletes and marks nothing."""
    now = now or timezone.now()
    report = Report(dry_run=dry_run)
    cut = cutoff(now)
    if cut is None:
        return report
    started = time.monotonic()
    gone: set[str] = set()
    due = expired_jobs(now)
    after = None  # keyset paging: jobs left unmarked (dry run, failures) are passed over
    while True:
        page = due
        if after:
            page = due.filter(
                Q(finished_at__gt=after[0]) | Q(finished_at=after[0], pk__gt=after[1])
            )
        rows = list(page.values(*COLUMNS)[:batch])
        if not rows:
            break
        report.batches += 1
        after = (rows[-1]["finished_at"], rows[-1]["pk"])
        doomed, handed_on = _plan(rows, cut, gone)
        done = []
        for item in doomed:
            if dry_run or _delete(item):
                done.append(item.job_id)
                report.add(item)
                if each:
                    each(item)
            else:
                report.failed += 1
        if not dry_run:
            _mark(now, done, handed_on, cut)
        if len(rows) < batch:
            break
        if time_limit is not None and time.monotonic() - started > time_limit:
            report.more = True
            break
    if not dry_run:
        Heartbeat.objects.update_or_create(
            name=LAST_PURGE,
            defaults={"beat_at": timezone.now(), "detail": {**report.as_dict(), "as_of": str(now)}},
        )
        log.info("purge: deleted %d files of %d jobs", report.files, report.jobs)
    return report


def last_purge() -> Heartbeat | None:
    return Heartbeat.objects.filter(name=LAST_PURGE).first()


def stored_bytes(team_ids) -> dict[int, int]:
    """Bytes of the inputs and results still stored, per team, in one aggregate read
    from the index job_stored_bytes. A shared input counts once (its owner's row), a
    reused result on the job that made it (while that job keeps its files); thumbnails
    are left out."""
    rows = (
        Job.objects.filter(team__in=team_ids, files_expired_at__isnull=True)
        .order_by()
        .values("team")
        .annotate(
            inputs=Sum("input_bytes", filter=Q(input_owner=True), default=0),
            outputs=Sum("output_bytes", filter=Q(reused_from__isnull=True), default=0),
        )
    )
    return {row["team"]: row["inputs"] + row["outputs"] for row in rows}
