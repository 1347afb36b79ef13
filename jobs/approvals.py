"""Approval above a team's limit: "submissions quoted above $X need a manager's approval".

A submission (one batch) whose real quote is above the team's `approval_threshold` is
accepted as usual (checked against the budget, every job's quote held) but its jobs wait
in `awaiting_approval` instead of going to the worker, and the team's managers get an
e-mail. A manager (or staff) approves the whole batch (its jobs become queued and are
handed to the worker) or rejects it with a reason from REASONS (its jobs are canceled
through the lifecycle, whose settle writes each hold's release row). Each decision is one
conditional move per job, on rows locked together: a second click, or a manager racing
another, finds nothing left to decide. Sandbox jobs are not billed, so a submission of
sandbox jobs only never waits.

The tracker, recovery, the sweep and the watchdog look at named states only (queued,
submitting, running, fetching), so they leave waiting jobs alone; the submitter (or any
member who may cancel the team's jobs) may cancel a waiting job, which releases its hold.
"""

import logging
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial

from django.conf import settings
from django.core.mail import send_mail
from django.db import connection, transaction
from django.http import Http404
from django.urls import reverse
from django.utils import timezone

from billing import members
from billing.models import Membership
from billing.money import usd
from jobs import lifecycle, tasks
from jobs.models import Job

State = Job.State
WAITING = State.AWAITING_APPROVAL
ZERO = Decimal("0.0000")
REASONS = ("Over what we planned", "Use a cheaper provider", "Not needed", "Other")
log = logging.getLogger(__name__)


class NotAllowed(Exception):
    """A member of the team (not a manager) tried to decide: 403."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadReason(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def real_total(jobs) -> Decimal:
    return sum((j.quoted_amount for j in jobs if not j.sandbox), ZERO)


# --- at submission ----------------------------------------------------------------------------
def wait_if_above_limit(team, jobs) -> bool:
    """In the submission's transaction, after its holds: park the batch if its real quote
    is above the team's limit. True when the jobs wait (the caller then does not queue
    them)."""
    limit = team.approval_threshold
    total = real_total(jobs)
    if limit is None or total <= limit:
        return False
    detail = (
        f"Waiting for a manager's approval: quoted {usd(total)}, above the team's limit "
        f"of {usd(limit)}."
    )
    for job in jobs:
        if lifecycle.move(job.pk, [State.QUEUED], WAITING, detail):
            job.state = WAITING
    transaction.on_commit(partial(notify_managers, jobs[0].batch), robust=True)
    return True


def notify_managers(batch) -> int:
    """E-mail the team's managers that a submission waits for them (after commit, like
    the budget warnings). Returns how many were written to."""
    jobs = list(Job.objects.filter(batch=batch, state=WAITING).select_related("team", "created_by"))
    if not jobs:
        return 0
    team, who = jobs[0].team, _name(jobs[0].created_by)
    emails = list(
        Membership.objects.filter(team=team, role=Membership.Role.MANAGER)
        .exclude(user__email="")
        .values_list("user__email", flat=True)
    )
    if not emails:
        return 0
    total, n = real_total(jobs), len(jobs)
    link = f"{settings.PUBLIC_BASE_URL}{reverse('billing:spend')}#approvals"
    subject = f"{who} asks to spend {usd(total)} in {team.name}: approve or reject"
    body = (
        f"{who} submitted {n} job{'' if n == 1 else 's'} quoted {usd(total)}, above "
        f"{team.name}'s approval limit of {usd(team.approval_threshold)}.\n"
        "They wait, holding their quote, until a manager approves or rejects them.\n\n"
        f"Decide on the Spend page: {link}\n"
    )
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, emails, fail_silently=True)
    return len(emails)


# --- who may decide ----------------------------------------------------------------------------
def _name(user) -> str:
    return user.get_username() if user is not None else "someone"


def job_of(user, pk) -> Job:
    """A job the user may see (staff: any), or 404."""
    jobs = Job.objects.all() if user.is_staff else Job.objects.for_user(user)
    # A positive 64-bit id, or nothing to look for (a larger one fails in the database).
    is_id = str(pk).isdigit() and 0 < int(pk) < 2**63
    job = jobs.select_related("team").filter(pk=pk).first() if is_id else None
    if job is None:
        raise Http404("No such job, or not yours.")
    return job


def batch_of(user, batch) -> list[Job]:
    """The batch's jobs if the user may see them (staff: any), or 404."""
    jobs = Job.objects.all() if user.is_staff else Job.objects.for_user(user)
    found = list(jobs.filter(batch=batch).select_related("team"))
    if not found:
        raise Http404("No such submission, or not yours.")
    return found


def check_may_decide(user, team) -> None:
    if not members.can_manage(user, team):
        raise NotAllowed(
            f"Only managers of {team.name} can approve or reject its submissions. Ask one of them."
        )


# --- the decisions ------------------------------------------------------------------------------
@dataclass
class Decision:
    batch: object
    decided: list[int] = field(default_factory=list)  # jobs moved now (empty: decided before)
    state: str = ""  # where they went

    @property
    def count(self) -> int:
        return len(self.decided)


def _waiting_ids(batch) -> list[int]:
    """The batch's waiting jobs, rows locked (PostgreSQL; SQLite's IMMEDIATE transaction
    holds the write lock) in one order, so two deciders queue instead of deadlocking."""
    rows = Job.objects.filter(batch=batch, state=WAITING).order_by("pk")
    if connection.vendor == "postgresql":
        rows = rows.select_for_update()
    return list(rows.values_list("pk", flat=True))


def approve(by, batch) -> Decision:
    """The batch's waiting jobs become queued and go to the worker."""
    with transaction.atomic():
        note = f"Approved by {_name(by)}."
        result = _decide(by, batch, State.QUEUED, note, next_poll_at=None)
        if result.decided:
            tasks.enqueue_submit(result.decided)  # sent once the decision is committed
    return result


def reject(by, batch, reason) -> Decision:
    """The batch's waiting jobs are canceled with the reason; each hold is released by the
    lifecycle's settle (a release row, never an edit)."""
    reason = " ".join(str(reason or "").split())
    if reason not in REASONS:
        raise BadReason(f"Pick a reason: {', '.join(REASONS)}.")
    note = f"Rejected by {_name(by)}: {reason}."
    return _decide(by, batch, State.CANCELED, note, approval_reason=reason)


def _decide(by, batch, to, note: str, **fields) -> Decision:
    """Move the batch's waiting jobs to `to`, each by a conditional move (a second press,
    or two managers at once, moves nothing twice), in one transaction (the caller's, when
    it has one: approve queues the tasks in it)."""
    jobs = batch_of(by, batch)
    check_may_decide(by, jobs[0].team)
    now, result = timezone.now(), Decision(batch, state=to)
    with transaction.atomic():
        for pk in _waiting_ids(batch):
            decided = lifecycle.move(
                pk, [WAITING], to, note, approval_decided_by=by, approval_decided_at=now, **fields
            )
            if decided:
                result.decided.append(pk)
    return result


# --- the spend page's list ------------------------------------------------------------------------
@dataclass
class Waiting:
    """One submission waiting for a decision."""

    batch: object
    team: object
    by: object
    at: object
    jobs: list = field(default_factory=list)

    @property
    def total(self) -> Decimal:
        return real_total(self.jobs)

    @property
    def sandbox_total(self) -> Decimal:
        return sum((j.quoted_amount for j in self.jobs if j.sandbox), ZERO)

    @property
    def providers(self) -> str:
        names = []
        for job in self.jobs:
            name = f"{job.provider_obj.name} {job.options_label}"
            if name not in names:
                names.append(name)
        return "; ".join(names)


def waiting_for(user, limit: int = 500) -> list[Waiting]:
    """Submissions waiting in the teams whose spend the user reviews (managers, staff),
    oldest first."""
    from billing import spend

    jobs = (
        Job.objects.filter(team__in=spend.visible_teams(user), state=WAITING)
        .select_related("team", "created_by")
        .order_by("created_at", "pk")[:limit]
    )
    found: dict = {}
    for job in jobs:
        entry = found.setdefault(
            job.batch, Waiting(job.batch, job.team, job.created_by, job.created_at)
        )
        entry.jobs.append(job)
    return list(found.values())
