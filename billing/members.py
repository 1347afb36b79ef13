"""Team self-service: what a team's managers (and staff) do on the team page.

Invite by e-mail, remove, change roles, set the monthly budget and members' caps. Each
change and its audit row (TeamEvent) are one transaction, with the team row locked
(PostgreSQL; SQLite's IMMEDIATE transactions serialize writers), so two managers acting
at once can never leave a team without a manager. Refusals are `Refused`, in plain words.
"""

import logging
import smtplib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import connection, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from billing.models import Membership, Team, TeamEvent
from billing.money import usd
from billing.teams import teams_of

Role = Membership.Role
Kind = TeamEvent.Kind
log = logging.getLogger(__name__)
MAX_MONEY = Decimal("9999999999.99")  # the columns' 12 digits, 2 after the point


class Refused(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


# --- who may see and change a team -------------------------------------------------------
def visible_teams(user):
    """Staff review every team; everyone else the teams they belong to."""
    if user.is_staff:
        return Team.objects.all()
    return teams_of(user)


def can_manage(user, team: Team) -> bool:
    if user.is_staff:
        return True
    return Membership.objects.filter(team=team, user=user, role=Role.MANAGER).exists()


def _name(user) -> str:
    return user.get_username() if user is not None else "someone"


def _change(by, what: str, before: Decimal | None, after: Decimal | None) -> str:
    """An audit line for a money setting: "alice set the budget from $50.00 to $80.00"."""
    if after is None:
        return f"{_name(by)} cleared {what} (it was {_money(before)})"
    if before is None:
        return f"{_name(by)} set {what} to {_money(after)}"
    return f"{_name(by)} set {what} from {_money(before)} to {_money(after)}"


def _money(amount: Decimal | None) -> str:
    return "none" if amount is None else usd(amount)


def parse_money(raw, what: str) -> Decimal | None:
    """A dollar amount typed in a form; empty means none. Refuses what is not one."""
    raw = (raw or "").strip().replace(",", "").removeprefix("$").strip()
    if not raw:
        return None
    try:
        amount = Decimal(raw)
    except InvalidOperation:
        raise Refused(f"Enter the {what} in dollars, like 80 or 80.50.") from None
    if not amount.is_finite():
        raise Refused(f"Enter the {what} in dollars, like 80 or 80.50.")
    if amount < 0:
        raise Refused(f"The {what} cannot be negative.")
    if amount != amount.quantize(Decimal("0.01")):
        raise Refused(f"The {what} is in whole cents: at most two digits after the point.")
    if amount > MAX_MONEY:
        raise Refused(f"The {what} is too large.")
    return amount.quantize(Decimal("0.01"))


def _locked(team: Team) -> Team:
    if connection.vendor == "postgresql":
        return Team.objects.select_for_update().get(pk=team.pk)
    return Team.objects.get(pk=team.pk)


def _membership(team: Team, member_id) -> Membership:
    """The member named by a form's user id, or a plain refusal."""
    member_id = str(member_id or "").strip()
    found = None
    if member_id.isdigit():
        found = (
            Membership.objects.select_related("user").filter(team=team, user_id=member_id).first()
        )
    if found is None:
        raise Refused(f"That person is not a member of {team.name}.")
    return found


def _last_manager(team: Team, membership: Membership) -> bool:
    if membership.role != Role.MANAGER:
        return False
    return not team.memberships.filter(role=Role.MANAGER).exclude(pk=membership.pk).exists()


def _event(team: Team, by, kind: str, text: str) -> TeamEvent:
    return TeamEvent.objects.create(team=team, actor=by, kind=kind, text=text[:300])


# --- budget and caps --------------------------------------------------------------------
def set_budget(team: Team, by, raw) -> bool:
    """Set (or, empty, clear) the monthly budget; False when it did not change."""
    amount = parse_money(raw, "budget")
    return _set_amount(team, by, "monthly_budget", amount, "the budget", Kind.BUDGET)


def set_approval_threshold(team: Team, by, raw) -> bool:
    """Set (or, empty, clear) the quote above which a submission waits for a manager's
    approval (jobs/approvals.py); False when it did not change."""
    amount = parse_money(raw, "approval limit")
    return _set_amount(team, by, "approval_threshold", amount, "the approval limit", Kind.APPROVAL)


def _set_amount(team: Team, by, field: str, amount, what: str, kind: str) -> bool:
    """A team's money setting changed, with its audit line, in one transaction."""
    with transaction.atomic():
        team = _locked(team)
        before = getattr(team, field)
        if before == amount:
            return False
        setattr(team, field, amount)
        team.save(update_fields=[field])
        _event(team, by, kind, _change(by, what, before, amount))
    return True


def set_cap(team: Team, by, member_id, raw) -> bool:
    """Set (or, empty, clear) a member's own monthly cap; False when it did not change."""
    amount = parse_money(raw, "monthly cap")
    with transaction.atomic():
        team = _locked(team)
        membership = _membership(team, member_id)
        before = membership.monthly_cap
        if before == amount:
            return False
        membership.monthly_cap = amount
        membership.save(update_fields=["monthly_cap"])
        what = f"{_name(membership.user)}'s monthly cap"
        _event(team, by, Kind.CAP, _change(by, what, before, amount))
    return True


# --- roles and removal ------------------------------------------------------------------
def set_role(team: Team, by, member_id, role) -> bool:
    if role not in Role.values:
        raise Refused("Pick a role: member or manager.")
    with transaction.atomic():
        team = _locked(team)
        membership = _membership(team, member_id)
        if membership.role == role:
            return False
        who = _name(membership.user)
        if _last_manager(team, membership):
            raise Refused(
                f"{who} is the only manager of {team.name}. Make someone else a manager "
                f"first, then change {who}'s role."
            )
        before = membership.get_role_display().lower()
        membership.role = role
        membership.save(update_fields=["role"])
        after = membership.get_role_display().lower()
        _event(team, by, Kind.ROLE, f"{_name(by)} changed {who} from {before} to {after}")
    return True


def remove(team: Team, by, member_id) -> Membership:
    with transaction.atomic():
        team = _locked(team)
        membership = _membership(team, member_id)
        who = _name(membership.user)
        if _last_manager(team, membership):
            raise Refused(
                f"{who} is the only manager of {team.name}, so cannot be removed. Make "
                f"someone else a manager first."
            )
        membership.delete()
        role = membership.get_role_display().lower()
        _event(team, by, Kind.REMOVE, f"{_name(by)} removed {who} ({role})")
    return membership


# --- invitations ------------------------------------------------------------------------
@dataclass(frozen=True)
class Invited:
    membership: Membership
    new_account: bool  # an account was made for them
    link_sent: bool  # they were e-mailed a link to set their password
    mail_failed: bool = False  # ...but the mail server refused it


def clean_email(raw) -> str:
    email = (raw or "").strip()
    try:
        validate_email(email)
    except ValidationError:
        raise Refused(f"{email or 'That'} is not an e-mail address.") from None
    local, _, domain = email.rpartition("@")
    return f"{local}@{domain.lower()}"


def _free_username(email: str) -> str:
    """The address itself when free (Django user names may hold @ . + - _), else with a
    number: the person signs in with the name the e-mail tells them."""
    User = get_user_model()
    base = email[:140]
    name, n = base, 1
    while User.objects.filter(username__iexact=name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


def _pending(user) -> bool:
    """Invited, and has never set a password nor signed in."""
    return not user.has_usable_password() and user.last_login is None


def invite(team: Team, by, raw_email, role=Role.MEMBER) -> Invited:
    """Add the person with this address to the team. Someone without an account gets one
    (no usable password) and an e-mail with a one-time link to set their password; so does
    someone invited before who has never set theirs (their old link may have expired), and
    inviting such a member again sends them a fresh link."""
    email = clean_email(raw_email)
    if role not in Role.values:
        raise Refused("Pick a role: member or manager.")
    User = get_user_model()
    with transaction.atomic():
        team = _locked(team)
        user = User.objects.filter(email__iexact=email).order_by("pk").first()
        new_account = user is None
        if new_account:
            user = User(username=_free_username(email), email=email)
            user.set_unusable_password()
            user.save()
        membership = Membership.objects.filter(team=team, user=user).first()
        if membership is None:
            membership = Membership.objects.create(team=team, user=user, role=role)
            label = membership.get_role_display().lower()
            # The audit names the address and role, never the link (it holds a token).
            _event(team, by, Kind.INVITE, f"{_name(by)} invited {email} as {label}")
        elif _pending(user):
            _event(team, by, Kind.INVITE, f"{_name(by)} sent {email} a new invitation link")
        else:
            raise Refused(f"{email} is already a member of {team.name}.")
    if not _pending(user):
        return Invited(membership, new_account, False)
    # After the commit: the link must name an account that exists for everyone.
    try:
        send_invitation(user, team, by)
    except (OSError, smtplib.SMTPException) as error:
        log.warning("Invitation e-mail to user %s failed: %s", user.pk, type(error).__name__)
        return Invited(membership, new_account, False, mail_failed=True)
    return Invited(membership, new_account, True)


def set_password_url(user) -> str:
    """A link that sets the password once: Django's reset token, which hashes the current
    password and last sign-in, so it stops working the moment either changes."""
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    path = reverse("set-password", kwargs={"uidb64": uid, "token": token})
    return settings.PUBLIC_BASE_URL + path


def send_invitation(user, team: Team, by) -> None:
    days = max(1, round(settings.PASSWORD_RESET_TIMEOUT / 86400))
    body = render_to_string(
        "registration/set_password_email.txt",
        {
            "user": user,
            "team": team,
            "by": _name(by),
            "url": set_password_url(user),
            "days": days,
            "login_url": settings.PUBLIC_BASE_URL + reverse("login"),
        },
    )
    subject = f"{_name(by)} invited you to {team.name} on Upscaler Portal"
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [user.email])
