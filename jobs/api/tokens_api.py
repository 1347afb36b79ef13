"""Who am I: the token a request was made with, and its user's teams. The simplest
authenticated call, for trying a new token (README, "API")."""

import datetime

from ninja import Router, Schema

from billing.models import Membership
from jobs.api.problems import ProblemOut

router = Router(tags=["Tokens"])


class TeamOut(Schema):
    id: int
    name: str
    role: str  # "manager" or "member"


class TokenOut(Schema):
    name: str
    prefix: str  # the token's first characters: how lists and logs name it
    user: str
    created_at: datetime.datetime
    last_used_at: datetime.datetime | None
    teams: list[TeamOut]


@router.get("/tokens/me", response={200: TokenOut, 401: ProblemOut, 429: ProblemOut})
def me(request):
    """The token this request was made with (never its secret), and the teams it acts in."""
    token = request.auth
    memberships = Membership.objects.filter(user=token.user).select_related("team")
    return {
        "name": token.name,
        "prefix": token.prefix,
        "user": token.user.get_username(),
        "created_at": token.created_at,
        "last_used_at": token.last_used_at,
        "teams": [
            {"id": m.team_id, "name": m.team.name, "role": m.role}
            for m in memberships.order_by("team__name", "team_id")
        ],
    }
