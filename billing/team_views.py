"""The team pages: members, budget and caps, and what managers change there (the logic is
billing/members.py). Members read; managers of the team and staff change; anyone else
gets a 404. Each form works without JavaScript (post, redirect, read) and, with htmx,
swaps its own section and the audit list."""

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse, reverse_lazy
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from billing import caps, ledger, members
from billing.models import Membership, Team

AUDIT_SHOWN = 50
MANAGERS_ONLY = "Only managers of {team} can change this. Ask one of them."


def _team(request, pk) -> Team:
    """A team the user belongs to (staff: any team), or 404."""
    return get_object_or_404(members.visible_teams(request.user), pk=pk)


def _rows(team: Team) -> list[dict]:
    """Each member with their role, cap and month: managers first, then by name."""
    month = caps.spent_and_held(team)
    rows = []
    memberships = team.memberships.select_related("user").order_by("-role", "user__username")
    for m in memberships:
        spent, held = month.get(m.user_id, (caps.ZERO, caps.ZERO))
        use = caps.MemberUsage(m.monthly_cap, spent, held)
        over_by = -use.left if use.left is not None and use.left < 0 else None
        rows.append({"m": m, "use": use, "over_by": over_by})
    return rows


def _context(request, team: Team, notice=None, **extra) -> dict:
    """The page's figures; `notice`: (section, level, text) to show in that section."""
    manage = members.can_manage(request.user, team)
    use = ledger.usage(team)
    return {
        "team": team,
        "use": use,
        "over_by": -use.left if use.left is not None and use.left < 0 else None,
        "rows": _rows(team),
        "manage": manage,
        "roles": Membership.Role.choices,
        "events": team.events.select_related("actor")[:AUDIT_SHOWN] if manage else [],
        **({f"{notice[0]}_notice": notice[1:]} if notice else {}),
        **extra,
    }


@login_required
@require_GET
def team_list(request):
    teams = members.visible_teams(request.user).order_by("name")
    mine = dict(Membership.objects.filter(user=request.user).values_list("team_id", "role"))
    lines = [{"team": t, "role": mine.get(t.pk, ""), "use": ledger.usage(t)} for t in teams]
    return render(request, "billing/team_list.html", {"lines": lines})


@login_required
@require_GET
def team_page(request, pk):
    return render(request, "billing/team.html", _context(request, _team(request, pk)))


def _answer(request, team: Team, section: str, level: str, text: str, status=200):
    """The outcome of a change: htmx gets its section (and the audit list, out of band);
    a plain form post is redirected to the page after a change, or shown the refusal."""
    if request.htmx:
        ctx = _context(request, team, notice=(section, level, text))
        html = render_to_string(f"billing/team.html#{section}", ctx, request)
        if ctx["manage"]:
            html += render_to_string("billing/team.html#audit", {**ctx, "oob": True}, request)
        return HttpResponse(html)
    if level == "error":
        ctx = _context(request, team, notice=(section, level, text))
        return render(request, "billing/team.html", ctx, status=status)
    messages.success(request, text)
    return redirect(reverse("teams:team", args=[team.pk]) + f"#{section}")


def _act(request, pk, section: str, action):
    """Run a manager's `action(team)` (it returns what to say), or refuse plainly."""
    team = _team(request, pk)
    if not members.can_manage(request.user, team):
        ctx = _context(request, team, notice=(section, "error", MANAGERS_ONLY.format(team=team)))
        return render(request, "billing/team.html", ctx, status=403)
    try:
        said = action(team)
    except members.Refused as refusal:
        return _answer(request, team, section, "error", refusal.message, status=422)
    if isinstance(said, HttpResponse):
        return said
    return _answer(request, team, section, "ok", said)


@login_required
@require_POST
def budget(request, pk):
    def change(team):
        if not members.set_budget(team, request.user, request.POST.get("budget")):
            return "The budget is unchanged."
        team.refresh_from_db()
        if team.monthly_budget is None:
            return "The budget is cleared: this team has no monthly limit."
        return f"The monthly budget is now ${team.monthly_budget:.2f}."

    return _act(request, pk, "budget", change)


@login_required
@require_POST
def approval(request, pk):
    """The quote above which a submission waits for a manager (jobs/approvals.py)."""

    def change(team):
        raw = request.POST.get("approval_threshold")
        if not members.set_approval_threshold(team, request.user, raw):
            return "The approval limit is unchanged."
        team.refresh_from_db()
        if team.approval_threshold is None:
            return "The approval limit is cleared: no submission waits for a manager."
        return (
            f"Submissions quoted above ${team.approval_threshold:.2f} now wait for a "
            "manager's approval."
        )

    return _act(request, pk, "budget", change)


@login_required
@require_POST
def invite(request, pk):
    def change(team):
        done = members.invite(
            team, request.user, request.POST.get("email"), request.POST.get("role", "member")
        )
        user, role = done.membership.user, done.membership.get_role_display().lower()
        said = f"{user.email} is now a {role} of {team.name}."
        if done.link_sent:
            said += " We e-mailed them a link to set their password."
        elif done.mail_failed:
            said += (
                " The e-mail with their link could not be sent (the mail server refused "
                "it): invite them again later to send a new one."
            )
        elif not done.new_account:
            said += f" They sign in as {user.get_username()}."
        return said

    return _act(request, pk, "members", change)


@login_required
@require_POST
def member(request, pk):
    """One member's role, cap or removal: `action` says which, `member` whose (user id)."""
    action, member_id = request.POST.get("action"), request.POST.get("member")

    def change(team):
        if action == "role":
            role = request.POST.get("role")
            if not members.set_role(team, request.user, member_id, role):
                return "The role is unchanged."
            return "Role changed."
        if action == "cap":
            if not members.set_cap(team, request.user, member_id, request.POST.get("cap")):
                return "The cap is unchanged."
            return "Monthly cap saved."
        if action == "remove":
            gone = members.remove(team, request.user, member_id)
            if gone.user_id == request.user.pk and not members.can_manage(request.user, team):
                return _left_team(request, team)
            return f"{gone.user.get_username()} is no longer in {team.name}."
        raise members.Refused("Pick what to change: role, cap or remove.")

    return _act(request, pk, "members", change)


def _left_team(request, team):
    """A manager who removed themselves can no longer see the page: back to the list."""
    messages.success(request, f"You left {team.name}.")
    url = reverse("teams:list")
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


# --- an invitation's link: Django's password-reset view with our words --------------------------
class SetPassword(auth_views.PasswordResetConfirmView):
    template_name = "registration/set_password.html"
    success_url = reverse_lazy("set-password-done")


@require_GET
def password_set(request):
    return render(request, "registration/set_password_done.html")
