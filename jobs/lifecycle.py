"""State changes of a job. Each one is a single conditional UPDATE plus a timeline row.

`move()` changes the state only if the job is still in one of the expected states, and
reports whether it did. That makes it the claim primitive: a redelivered task, a
duplicate webhook or a race with "cancel" finds nothing to move and does nothing.

Every text written here passes the one scrubber (`jobs.scrub`): timeline details and a
job's error, result link and task id are where a provider's words become ours, and they
are all written through this module, so no adapter can forget it.
"""

import logging
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from billing import ledger
from jobs import leases, notices, webhooks_out
from jobs.models import Job, JobEvent
from jobs.scrub import scrub

State = Job.State
# The job's fields a provider fills in. The link and the id are used as they are; one
# that quotes our key is stored masked, and that job then fails in plain words.
PROVIDER_TEXT = ("error_code", "error_message", "result_url", "provider_task_id")
ERROR_CODE_LENGTH = Job._meta.get_field("error_code").max_length
log = logging.getLogger(__name__)


def _scrubbed(fields: dict) -> dict:
    for name in PROVIDER_TEXT:
        if fields.get(name):
            fields[name] = scrub(fields[name])
    if fields.get("error_code"):
        # Codes may be the provider's own words: clipped (after scrubbing, so no part of
        # a secret survives) to fit the column, which PostgreSQL enforces.
        fields["error_code"] = fields["error_code"][:ERROR_CODE_LENGTH]
    return fields


def move(
    job_id: int, frm, to: str, detail: str = "", *, provider_stopped: bool = False, **fields
) -> bool:
    """`provider_stopped`: on a cancel, the provider confirmed it stopped the task (so it
    will not bill it); the ledger needs to know when it settles."""
    now = timezone.now()
    detail, fields = scrub(detail), _scrubbed(fields)
    states = list(frm)
    final = to in Job.FINAL_STATES
    if final:
        fields.setdefault("finished_at", now)
        fields.setdefault("next_poll_at", None)
    with transaction.atomic():
        ended_from = states[0] if len(states) == 1 else None
        if final and ended_from is None:
            # Which state it ends from decides whether the provider may have billed it;
            # the row is locked (PostgreSQL; SQLite holds the write lock from BEGIN) so
            # it cannot move on between this read and the update.
            ended_from = (
                Job.objects.select_for_update()
                .filter(pk=job_id, state__in=states)
                .values_list("state", flat=True)
                .first()
            )
            if ended_from is None:
                return False
        changed = Job.objects.filter(pk=job_id, state__in=states).update(
            state=to, updated_at=now, **fields
        )
        if changed:
            JobEvent.objects.create(job_id=job_id, state=to, at=now, detail=detail)
            if final:
                # Charge, release or keep the hold open (possibly billed) in the same
                # transaction as the state change.
                ledger.settle(
                    Job.objects.get(pk=job_id), frm=ended_from, provider_stopped=provider_stopped
                )
                # Once committed: is its batch over, and does someone want an e-mail?
                # (robust: a failure there is logged and never breaks the job's own step).
                transaction.on_commit(partial(notices.job_ended, job_id), robust=True)
                # Its webhook events, if its creator named a URL (sent once committed).
                webhooks_out.job_ended(job_id)
    if changed:
        _log_move(job_id, ended_from, to, now, fields.get("error_code", ""))
    return bool(changed)


def _log_move(job_id: int, frm, to: str, now, error_code: str = "", job: dict | None = None):
    """One log line per transition, for operators (JSON fields with LOG_FORMAT=json). The
    error code only: the message is the provider's words, kept on the job's page."""
    if not log.isEnabledFor(logging.INFO):
        return
    job = job or Job.objects.filter(pk=job_id).values("team_id", "provider", "created_at").first()
    if job is None:
        return
    fields = {
        "job_id": job_id,
        "team_id": job["team_id"],
        "provider": job["provider"],
        "from_state": frm,
        "state": to,
        "duration_s": round((now - job["created_at"]).total_seconds(), 3),
    }
    error = f", error {error_code}" if error_code else ""
    if error_code:
        fields["error_code"] = error_code
    log.info(
        "job %s %s -> %s (team %s, %s, %.1f s since upload%s)",
        job_id,
        frm or "?",
        to,
        fields["team_id"],
        fields["provider"],
        fields["duration_s"],
        error,
        extra=fields,
    )


def note(job_id: int, state: str, detail: str) -> None:
    """A timeline entry that does not change the state (retries, hints, warnings)."""
    JobEvent.objects.create(job_id=job_id, state=state, at=timezone.now(), detail=scrub(detail))


def claim(job_id: int, owner: str = "") -> bool:
    """queued -> submitting, at most once per attempt, whoever asks.

    A queued job waiting out a retry delay (next_poll_at in the future) is not claimed
    yet; the tracker enqueues it again when the delay is over. The claim is a lease held
    by `owner` for SUBMIT_LEASE_SECONDS (renewed while the submit runs: jobs.leases)."""
    now = timezone.now()
    with transaction.atomic():
        changed = (
            Job.objects.filter(pk=job_id, state=State.QUEUED)
            .filter(Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now))
            .update(
                state=State.SUBMITTING,
                submitted_at=now,
                next_poll_at=None,
                attempts=F("attempts") + 1,
                updated_at=now,
                lease_owner=owner or leases.new_owner(),
                lease_expires_at=leases.until(settings.SUBMIT_LEASE_SECONDS),
            )
        )
        if changed:
            job = Job.objects.values("attempts", "team_id", "provider", "created_at").get(pk=job_id)
            attempt = f" (attempt {job['attempts']})" if job["attempts"] > 1 else ""
            JobEvent.objects.create(
                job_id=job_id,
                state=State.SUBMITTING,
                at=now,
                detail=f"Handing over to the provider{attempt}.",
            )
    if changed:
        _log_move(job_id, State.QUEUED, State.SUBMITTING, now, job=job)
    return bool(changed)


def retry_later(job_id: int, delay: float, detail: str, **fields) -> bool:
    """submitting -> queued again, after an answer that proves the provider did not take
    the job (429, 5xx, no connection). The tracker resubmits it when `delay` is over."""
    when = timezone.now() + timezone.timedelta(seconds=delay)
    return move(
        job_id,
        [State.SUBMITTING],
        State.QUEUED,
        detail,
        next_poll_at=when,
        **leases.RELEASED,
        **fields,
    )


def claim_download(job_id: int, owner: str) -> bool:
    """Take the download of a job in `fetching`: only if nobody holds it (or its holder's
    lease ran out) and no retry delay is pending. A redelivered or duplicate finish task
    finds nothing to claim."""
    now = timezone.now()
    return bool(
        Job.objects.filter(pk=job_id, state=State.FETCHING)
        .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
        .filter(Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now))
        .update(
            lease_owner=owner,
            lease_expires_at=leases.until(settings.FETCH_LEASE_SECONDS),
            next_poll_at=None,
        )
    )


def fail(job_id: int, frm, code: str, message: str) -> bool:
    return move(job_id, frm, State.FAILED, message, error_code=code, error_message=message)


def cancel(job: Job, by, provider_said: str = "", provider_stopped: bool = False) -> bool:
    """`provider_stopped`: the provider confirmed it stopped the task. Without that, a
    job canceled after it was handed over stays possibly billed (billing.exposure)."""
    who = by.get_username() if by is not None else "the system"
    detail = f"Canceled by {who}."
    if job.state == State.SUBMITTING and job.provider_obj.runs_on_worker:
        detail += " The upscale had already started on the worker; its result is discarded."
    if provider_said:
        detail += " " + provider_said
    # A job waiting for a manager's approval was never handed over: canceling it
    # releases its hold (jobs/approvals.py).
    return move(
        job.pk,
        [*Job.ACTIVE_STATES, State.AWAITING_APPROVAL],
        State.CANCELED,
        detail,
        provider_stopped=provider_stopped,
    )
