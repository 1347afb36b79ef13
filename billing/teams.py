"""Which teams a user acts for. Every team-scoped query starts here."""

from django.db import transaction

from billing.models import Membership, Team


def teams_of(user):
    if not user.is_authenticated:
        return Team.objects.none()
    return Team.objects.filter(memberships__user=user)


def ensure_personal_team(user) -> Team | None:
    """Give a user who belongs to no team a team of their own, so the portal is never
    a dead end. Returns the new team, or None if the user already had one."""
    with transaction.atomic():
        if Membership.objects.filter(user=user).exists():
            return None
        label = user.get_full_name() or user.get_username()
        team = Team.objects.create(name=f"{label}'s team")
        Membership.objects.create(team=team, user=user, role=Membership.Role.MANAGER)
        return team
