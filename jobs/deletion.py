"""A person deletes a job's files: its result, its thumbnails and its original (unless
another job that keeps its files shares that stored original). The row, its timeline
and its ledger rows stay: money history is never deleted.

- A result another job reuses (jobs/reuse.py) stays while a job that keeps its files
  uses it, like a shared original.
- Who: the job's creator, a manager of its team, or staff (all of them team members:
  views reach jobs through `Job.objects.for_user`).
- The database says "deleted" first, in one transaction; the files go after it commits.
  A crash in between leaves stray files no page points at, never a job whose page
  points at files that are gone.
- `files_expired_at` is set too: it is the one field every view, the purge and the
  stored-bytes count read for "this job's files are gone". `deleted_at`/`deleted_by`
  say why: a person, not retention.
"""

import logging

from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.html import strip_tags

from billing.models import Membership
from jobs import retention
from jobs.models import Job, JobEvent

log = logging.getLogger(__name__)
FILE_FIELDS = ("input_file", "input_thumb", "output_file", "output_thumb")


class Refused(Exception):
    """Deletion refused, with a sentence for the person (`forbidden`: not theirs)."""

    def __init__(self, message: str, forbidden: bool = False):
        super().__init__(message)
        self.message = message
        self.forbidden = forbidden


def may_delete(job: Job, user) -> bool:
    if user.is_staff or (job.created_by_id and job.created_by_id == user.pk):
        return True
    return Membership.objects.filter(
        team_id=job.team_id, user=user, role=Membership.Role.MANAGER
    ).exists()


def note(job: Job) -> str:
    """ "Files deleted by alice on 2026-12-01.": what the job's page, its History row,
    the compare page and its file links (410) say. One template says it for all."""
    return strip_tags(render_to_string("jobs/_deleted_note.html", {"job": job})).strip()


def gone_note(job: Job) -> str:
    """Why a job has no files: deleted by a person, or expired."""
    return note(job) if job.deleted_at else job.files_expired_note


def delete_files(job: Job, by) -> list[str]:
    """Delete the job's files for `by`; returns the stored names it deletes (after the
    commit). Raises Refused with a plain sentence when it may not."""
    check(job, by)
    with transaction.atomic():
        # The row as it is now, locked (PostgreSQL; SQLite's writes are serialised): the
        # conditional update below is what guarantees a finished job with its files.
        row = Job.objects.select_for_update().get(pk=job.pk)
        _check(row)
        names = [getattr(row, f).name for f in FILE_FIELDS if getattr(row, f).name]
        now = timezone.now()
        here = Q(pk=row.pk)
        shared = row.input_file.name and row.input_file.name in retention.inputs_kept(
            [row.input_file.name], here
        )
        results = _result_row(row)
        kept_results = retention.outputs_kept([results], here)
        changed = Job.objects.filter(
            here, state__in=Job.FINAL_STATES, deleted_at__isnull=True, files_expired_at__isnull=True
        ).update(
            deleted_at=now,
            deleted_by=by,
            files_expired_at=now,
            **{f: "" for f in FILE_FIELDS},
        )
        if not changed:  # it changed under us: say what it is now
            _check(Job.objects.get(pk=row.pk))
            raise Refused("This job changed meanwhile: reload the page.")
        names = [n for n in names if n not in kept_results]  # reused by another job
        if shared:
            # Another job keeps the original: it stays, and is counted on a keeper.
            names = [n for n in names if n not in (row.input_file.name, row.input_thumb.name)]
            if row.input_owner:
                retention.hand_on(row.input_file.name, here)
        JobEvent.objects.create(
            job=row,
            state=row.state,
            at=now,
            detail=f"Files deleted by {_name(by)}. The job's history and cost stay.",
        )
        original = (row.input_file.name, row.input_thumb.name)
        transaction.on_commit(lambda: _remove(row.pk, names, original, results))
    job.refresh_from_db()
    return names


def check(job: Job, user) -> None:
    """Raises Refused if `user` may not delete the job's files now (the confirmation
    step says so before anyone presses the button)."""
    if not may_delete(job, user):
        raise Refused(
            f"Only {_name(job.created_by)} or a manager of the team can delete this job's files.",
            forbidden=True,
        )
    _check(job)


def _check(job: Job) -> None:
    if job.deleted_at:
        raise Refused(f"{note(job)} There is nothing left to delete.")
    if job.files_expired_at:
        raise Refused(f"{job.files_expired_note} There is nothing left to delete.")
    if job.state not in Job.FINAL_STATES:
        raise Refused("This job is still running. Cancel it first, then delete its files.")


def _result_row(row: Job) -> dict:
    return {
        "team_id": row.team_id,
        "input_sha256": row.input_sha256,
        "output_file": row.output_file.name,
        "output_thumb": row.output_thumb.name,
    }


def _remove(job_id: int, names: list[str], original: tuple[str, str], results=None) -> None:
    if original[0] in names and Job.objects.filter(input_file=original[0]).exists():
        # "Run again" from a sibling in the meantime: that new job uses the original now.
        names = [n for n in names if n not in original]
    if results:  # a job made in the meantime reuses the result (jobs/reuse.py)
        kept = retention.outputs_kept([results], Q(pk=job_id))
        names = [n for n in names if n not in kept]
    for name in names:
        try:
            default_storage.delete(name)  # a file already gone is fine (local and S3)
        except Exception as exc:  # noqa: BLE001 - a stray file must not fail the request
            log.warning("delete: job %s left %s: %s", job_id, name, exc.__class__.__name__)


def _name(user) -> str:
    return user.get_username() if user else "its creator"
