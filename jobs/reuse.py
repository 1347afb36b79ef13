"""Never pay twice: the same image (by content), provider and options as a succeeded job
of the team whose result is still stored reuses that result for free.

- A match: same team, same `input_sha256`, same provider, same options as the job
  stores them (after `provider.resolve_options`), succeeded, its result still stored
  and not past retention, and the same sandbox flag (a sandbox result never stands in
  for a real one, nor the other way round). Newest first; a job that did the work is
  preferred to one that reused it.
- A reused job is made by intake like any job, then moved straight to `succeeded`
  pointing at the match's result file: no hold, no charge. Its `quoted_amount` keeps
  what it would have cost (the spend page's "saved by reuse"), never in the ledger.
- The result file is then shared: the purge and "delete files" keep it while any job
  that keeps its files uses it (`jobs.retention.outputs_kept`).

Jobs made before content hashes were recorded get theirs from `hash_old_inputs` (the
daily housekeeping run, and `manage.py hash_inputs` right after an upgrade), which hashes
their stored originals.
"""

import datetime
import hashlib
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from django.core.files.storage import default_storage
from django.utils import timezone

from jobs import lifecycle, retention
from jobs.models import Job

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reuse:
    """What the quote says of a line that can reuse an earlier result (the API's
    `reuse: {job_id, done_at, by}`)."""

    job_id: int
    done_at: datetime.datetime
    by: str

    @classmethod
    def of(cls, job: Job) -> "Reuse":
        who = job.created_by.get_username() if job.created_by_id else "someone"
        return cls(job.pk, job.finished_at or job.created_at, who)

    @property
    def day(self) -> str:
        """ "3 Nov" (and the year when it is not this one)."""
        at = timezone.localtime(self.done_at)
        this_year = at.year == timezone.localtime().year
        return f"{at.day} {at:%b}" + ("" if this_year else f" {at.year}")


def line_key(provider_slug: str, sha256: str) -> str:
    """How the upload form names one image with one provider ("run again" ticks it):
    the submission has one option set per provider, so this is unique per line."""
    return f"{provider_slug}:{sha256}"


def stored_results(team, hashes: Iterable[str]) -> list[Job]:
    """The team's succeeded jobs with one of these inputs whose result is still stored
    and not past retention (the purge may be deleting those), best first: jobs that did
    the work before jobs that reused it, newest first (index job_same_input)."""
    hashes = {h for h in hashes if h}
    if team is None or not hashes:
        return []
    jobs = Job.objects.filter(
        team=team,
        input_sha256__in=hashes,
        state=Job.State.SUCCEEDED,
        files_expired_at__isnull=True,
    ).exclude(output_file="")
    cut = retention.cutoff(timezone.now())
    if cut is not None:
        jobs = jobs.exclude(finished_at__lt=cut)
    found = list(jobs.select_related("created_by").order_by("-finished_at", "-pk")[:200])
    return sorted(found, key=lambda job: job.reused_from_id is not None)  # stable


def pick(candidates: Iterable[Job], sha256: str, provider, options: Mapping) -> Job | None:
    """The first candidate with this input, provider and (resolved) options, of the
    provider's sandbox flag now."""
    if not sha256:
        return None
    for job in candidates:
        if (
            job.input_sha256 == sha256
            and job.provider == provider.slug
            and job.sandbox == provider.is_sandbox
            and job.options == dict(options)
        ):
            return job
    return None


def find(team, sha256: str, provider, options: Mapping) -> Job | None:
    """The result a new job of this input, provider and resolved options would reuse."""
    return pick(stored_results(team, [sha256]), sha256, provider, options)


def finish(job: Job, original: Job) -> bool:
    """Move a just-made job to `succeeded` with `original`'s result (shared, not copied):
    through the lifecycle, so the timeline says so and the job's end is announced like
    any other; billing.ledger.settle writes nothing for a reused job."""
    reuse = Reuse.of(original)
    done = timezone.localtime(reuse.done_at)
    return lifecycle.move(
        job.pk,
        [job.state],
        Job.State.SUCCEEDED,
        f"Reused the result of job #{original.pk} (done on {done:%Y-%m-%d} by {reuse.by}): "
        "nothing charged.",
        reused_from=original,
        output_file=original.output_file.name,
        output_thumb=original.output_thumb.name,
        output_format=original.output_format,
        output_width=original.output_width,
        output_height=original.output_height,
        output_bytes=original.output_bytes,
    )


# Not a hex digest, so never matched: a job whose original is missing from storage, kept
# from being tried again by every run.
NO_FILE = "missing"


def hash_old_inputs(batch: int = 200, time_limit: float | None = None) -> tuple[int, bool]:
    """Record the content hash of succeeded jobs made before hashes were (so their results
    can be reused), by reading their stored originals; `batch` files at a time until none
    is left or `time_limit` seconds have passed. Returns (files hashed, more left).

    Each file's jobs are updated on their own, only where the hash is still empty: a run
    killed at any point loses at most one file's reading, and two runs agree."""
    started = time.monotonic()
    hashed = 0
    old = Job.objects.filter(
        input_sha256="",
        state=Job.State.SUCCEEDED,
        files_expired_at__isnull=True,
        deleted_at__isnull=True,
    ).exclude(input_file="")
    while True:
        names = list(
            old.order_by("input_file").values_list("input_file", flat=True).distinct()[:batch]
        )
        for name in names:
            digest = _file_sha256(name)
            old.filter(input_file=name).update(input_sha256=digest or NO_FILE)
            hashed += digest is not None
        if len(names) < batch:
            return hashed, False
        if time_limit is not None and time.monotonic() - started > time_limit:
            return hashed, True


def _file_sha256(name: str) -> str | None:
    sha = hashlib.sha256()
    try:
        with default_storage.open(name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                sha.update(chunk)
    except (FileNotFoundError, OSError) as gone:
        log.warning(
            "No stored original %s to hash (%s): left unmatched.", name, type(gone).__name__
        )
        return None
    return sha.hexdigest()
