"""Team self-service: the team pages, invitations, roles, budgets, caps and their audit."""

import re
from decimal import Decimal
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.core import mail

from billing import caps, ledger, members
from billing.models import Membership, Team, TeamEvent
from jobs import intake, tasks
from jobs.models import Job
from jobs.scrub import scrub
from tests.images import upload

User = get_user_model()


@pytest.fixture
def staff(db):
    return User.objects.create_user("sam", "sam@example.com", "pw-12345", is_staff=True)


def signed_in(client, user):
    client.force_login(user)
    return client


def page(client, team):
    return client.get(f"/teams/{team.pk}/").content.decode()


def events(team):
    return list(TeamEvent.objects.filter(team=team).values_list("text", flat=True))


# --- seeing teams --------------------------------------------------------------------------
def test_a_member_sees_their_team_read_only(client, team, owner, teammate):
    team.monthly_budget = Decimal("50")
    team.save()
    html = page(signed_in(client, teammate), team)
    assert "Studio" in html and "$50.00" in html and "alice" in html and "bob" in html
    assert 'name="budget"' not in html and 'name="email"' not in html
    assert "Who did what" not in html  # the audit is for managers


def test_a_manager_gets_the_forms_and_the_audit(owner_client, team, owner):
    html = page(owner_client, team)
    assert 'name="budget"' in html and 'name="email"' in html and "Who did what" in html


def test_an_outsider_gets_404_for_a_foreign_team(client, team, owner, outsider):
    assert signed_in(client, outsider).get(f"/teams/{team.pk}/").status_code == 404
    assert client.post(f"/teams/{team.pk}/budget/", {"budget": "5"}).status_code == 404
    assert client.post(f"/teams/{team.pk}/invite/", {"email": "x@example.com"}).status_code == 404
    assert client.post(f"/teams/{team.pk}/members/", {"action": "remove"}).status_code == 404
    assert Team.objects.get(pk=team.pk).monthly_budget is None


def test_the_list_shows_my_teams_and_staff_see_every_team(client, team, other_team, owner, staff):
    html = signed_in(client, owner).get("/teams/").content.decode()
    assert "Studio" in html and "Agency" not in html
    html = signed_in(client, staff).get("/teams/").content.decode()
    assert "Studio" in html and "Agency" in html


def test_the_pages_need_sign_in_and_refuse_wrong_methods(client, owner_client, team):
    assert client.logout() is None
    assert client.get(f"/teams/{team.pk}/").status_code == 302
    owner_client.force_login(Membership.objects.get(team=team).user)
    assert owner_client.get(f"/teams/{team.pk}/budget/").status_code == 405
    assert owner_client.post(f"/teams/{team.pk}/").status_code == 405


def test_the_top_bar_links_the_team_page(owner_client):
    assert 'href="/teams/"' in owner_client.get("/teams/").content.decode()


def test_the_spend_page_points_to_the_team_page_not_the_admin(owner_client, team):
    html = owner_client.get("/spend/").content.decode()
    assert "Budgets are set in the admin" not in html
    assert '<a href="/teams/">Set budgets on the team page</a>' in html


# --- budget --------------------------------------------------------------------------------
def test_a_manager_sets_changes_and_clears_the_budget_with_an_audit(owner_client, team):
    response = owner_client.post(f"/teams/{team.pk}/budget/", {"budget": "50"})
    assert response.status_code == 302 and response["Location"] == f"/teams/{team.pk}/#budget"
    owner_client.post(f"/teams/{team.pk}/budget/", {"budget": "80.00"})
    team.refresh_from_db()
    assert team.monthly_budget == Decimal("80.00")
    html = owner_client.get(f"/teams/{team.pk}/").content.decode()
    assert "The monthly budget is now $80.00." in html  # the message after the redirect
    owner_client.post(f"/teams/{team.pk}/budget/", {"budget": ""})
    team.refresh_from_db()
    assert team.monthly_budget is None
    assert events(team) == [
        "alice cleared the budget (it was $80.00)",
        "alice set the budget from $50.00 to $80.00",
        "alice set the budget to $50.00",
    ]
    assert "alice set the budget from $50.00 to $80.00" in page(owner_client, team)


def test_an_unchanged_budget_writes_no_audit(owner_client, team):
    team.monthly_budget = Decimal("10")
    team.save()
    owner_client.post(f"/teams/{team.pk}/budget/", {"budget": "10.00"})
    assert events(team) == []


@pytest.mark.parametrize(
    "raw, said",
    [
        ("-5", "The budget cannot be negative."),
        ("lots", "Enter the budget in dollars, like 80 or 80.50."),
        ("NaN", "Enter the budget in dollars, like 80 or 80.50."),
        ("1.234", "at most two digits after the point"),
        ("1e20", "The budget is too large."),
    ],
)
def test_a_bad_budget_is_refused_plainly(owner_client, team, raw, said):
    response = owner_client.post(f"/teams/{team.pk}/budget/", {"budget": raw})
    assert response.status_code == 422 and said in response.content.decode()
    team.refresh_from_db()
    assert team.monthly_budget is None and events(team) == []


def test_a_member_cannot_change_the_budget(client, team, owner, teammate):
    response = signed_in(client, teammate).post(f"/teams/{team.pk}/budget/", {"budget": "5"})
    assert response.status_code == 403
    assert "Only managers of Studio can change this." in response.content.decode()
    team.refresh_from_db()
    assert team.monthly_budget is None and events(team) == []


def test_staff_manage_any_team(client, team, owner, teammate, staff):
    signed_in(client, staff).post(f"/teams/{team.pk}/budget/", {"budget": "12"})
    client.post(f"/teams/{team.pk}/members/", {"action": "cap", "member": teammate.pk, "cap": "3"})
    team.refresh_from_db()
    assert team.monthly_budget == Decimal("12.00")
    assert events(team) == ["sam set bob's monthly cap to $3.00", "sam set the budget to $12.00"]


def test_htmx_swaps_the_section_and_the_audit(owner_client, team):
    response = owner_client.post(
        f"/teams/{team.pk}/budget/", {"budget": "25"}, HTTP_HX_REQUEST="true"
    )
    html = response.content.decode()
    assert response.status_code == 200 and html.lstrip().startswith(
        '<section class="card team-budget"'
    )
    assert "The monthly budget is now $25.00." in html
    assert 'id="audit" hx-swap-oob="outerHTML"' in html and "alice set the budget to $25.00" in html
    assert "<html" not in html
    refused = owner_client.post(
        f"/teams/{team.pk}/budget/", {"budget": "-1"}, HTTP_HX_REQUEST="true"
    ).content.decode()
    assert "The budget cannot be negative." in refused and "<html" not in refused


# --- roles and removal ---------------------------------------------------------------------
def test_a_manager_changes_a_role_with_an_audit(owner_client, team, teammate):
    response = owner_client.post(
        f"/teams/{team.pk}/members/", {"action": "role", "member": teammate.pk, "role": "manager"}
    )
    assert response.status_code == 302
    assert Membership.objects.get(team=team, user=teammate).role == "manager"
    assert events(team) == ["alice changed bob from member to manager"]


def test_the_last_manager_cannot_step_down_or_be_removed(owner_client, team, owner, teammate):
    url = f"/teams/{team.pk}/members/"
    demote = owner_client.post(url, {"action": "role", "member": owner.pk, "role": "member"})
    assert demote.status_code == 422
    assert "alice is the only manager of Studio. Make someone else a manager first" in (
        demote.content.decode()
    )
    removed = owner_client.post(url, {"action": "remove", "member": owner.pk})
    assert removed.status_code == 422
    assert "alice is the only manager of Studio, so cannot be removed." in removed.content.decode()
    assert Membership.objects.get(team=team, user=owner).role == "manager"
    assert events(team) == []


def test_a_manager_removes_a_member_with_an_audit(owner_client, team, teammate):
    response = owner_client.post(
        f"/teams/{team.pk}/members/", {"action": "remove", "member": teammate.pk}
    )
    assert response.status_code == 302
    assert not Membership.objects.filter(team=team, user=teammate).exists()
    assert events(team) == ["alice removed bob (member)"]
    assert User.objects.filter(pk=teammate.pk).exists()  # the account stays (and its jobs)


def test_a_manager_who_leaves_goes_back_to_the_list(owner_client, team, owner, teammate):
    Membership.objects.filter(user=teammate).update(role="manager")
    response = owner_client.post(
        f"/teams/{team.pk}/members/", {"action": "remove", "member": owner.pk}
    )
    assert response.status_code == 302 and response["Location"] == "/teams/"
    assert owner_client.get(f"/teams/{team.pk}/").status_code == 404


def test_a_member_cannot_change_roles_caps_or_remove(client, team, owner, teammate):
    signed_in(client, teammate)
    url = f"/teams/{team.pk}/members/"
    for data in (
        {"action": "role", "member": teammate.pk, "role": "manager"},
        {"action": "cap", "member": teammate.pk, "cap": ""},
        {"action": "remove", "member": owner.pk},
    ):
        assert client.post(url, data).status_code == 403
    assert client.post(f"/teams/{team.pk}/invite/", {"email": "x@example.com"}).status_code == 403
    assert Membership.objects.get(team=team, user=teammate).role == "member"
    assert Membership.objects.filter(team=team).count() == 2 and events(team) == []


@pytest.mark.parametrize("member", ["", "abc", "999999", "-1"])
def test_a_bad_member_id_is_refused_plainly(owner_client, team, member, outsider):
    for action in ("role", "cap", "remove"):
        response = owner_client.post(
            f"/teams/{team.pk}/members/",
            {"action": action, "member": member, "role": "member", "cap": "1"},
        )
        assert response.status_code == 422
        assert "That person is not a member of Studio." in response.content.decode()


def test_someone_of_another_team_is_not_a_member_here(owner_client, team, outsider):
    response = owner_client.post(
        f"/teams/{team.pk}/members/", {"action": "remove", "member": outsider.pk}
    )
    assert response.status_code == 422 and Membership.objects.filter(user=outsider).exists()


def test_a_bad_role_or_action_is_refused_plainly(owner_client, team, teammate):
    url = f"/teams/{team.pk}/members/"
    bad_role = owner_client.post(url, {"action": "role", "member": teammate.pk, "role": "boss"})
    assert bad_role.status_code == 422 and "Pick a role" in bad_role.content.decode()
    bad_action = owner_client.post(url, {"action": "promote", "member": teammate.pk})
    assert bad_action.status_code == 422 and "Pick what to change" in bad_action.content.decode()


# --- caps ------------------------------------------------------------------------------------
def test_a_manager_sets_and_clears_a_members_cap(owner_client, team, teammate):
    url = f"/teams/{team.pk}/members/"
    owner_client.post(url, {"action": "cap", "member": teammate.pk, "cap": "5"})
    assert Membership.objects.get(team=team, user=teammate).monthly_cap == Decimal("5.00")
    owner_client.post(url, {"action": "cap", "member": teammate.pk, "cap": "7.5"})
    refused = owner_client.post(url, {"action": "cap", "member": teammate.pk, "cap": "-2"})
    assert refused.status_code == 422 and "The monthly cap cannot be negative." in (
        refused.content.decode()
    )
    owner_client.post(url, {"action": "cap", "member": teammate.pk, "cap": ""})
    assert Membership.objects.get(team=team, user=teammate).monthly_cap is None
    assert events(team) == [
        "alice cleared bob's monthly cap (it was $7.50)",
        "alice set bob's monthly cap from $5.00 to $7.50",
        "alice set bob's monthly cap to $5.00",
    ]


@pytest.fixture
def priced(settings):
    """apixo with a key (not a sandbox): $0.01 an image from the shipped price book; the
    submit task is not run."""
    settings.PROVIDER_SETTINGS = {
        **settings.PROVIDER_SETTINGS,
        "apixo": {"api_key": "k", "base_url": "http://127.0.0.1:9"},
    }
    with mock.patch.object(tasks, "enqueue_submit"):
        yield lambda user, team, n=1: intake.submit_uploads(
            user=user,
            team=team,
            files=[upload(f"p{i}.png") for i in range(n)],
            choices=[("apixo", {"resolution": "2k"})],
        )


# Concurrency: the cap is checked inside ledger.hold(), after the team row lock the budget
# takes (IMMEDIATE transactions on SQLite), so the budget's concurrency test
# (tests/test_billing.py::test_concurrent_submissions_never_overspend) covers the path the
# cap runs on: submissions of one team, and so of one member, are checked one at a time.
def test_the_cap_allows_exactly_reaching_it_and_refuses_beyond(priced, team, owner, teammate):
    Membership.objects.filter(team=team, user=teammate).update(monthly_cap=Decimal("0.03"))
    priced(teammate, team, 2)
    priced(teammate, team, 1)  # $0.03 of $0.03: exactly the cap is allowed
    with pytest.raises(intake.SubmissionRefused) as refused:
        priced(teammate, team, 1)
    assert refused.value.errors[0].startswith(
        "Your monthly cap in Studio is $0.03; you have $0.00 left; this submission would "
        "cost $0.01."
    )
    assert Job.objects.filter(created_by=teammate).count() == 3
    priced(owner, team, 2)  # the cap is bob's, not the team's


def test_the_cap_counts_charges_and_open_holds_of_the_members_jobs(priced, team, teammate):
    Membership.objects.filter(team=team, user=teammate).update(monthly_cap=Decimal("0.05"))
    (job,) = priced(teammate, team, 1)
    ledger.correct(team, Decimal("0.02"), "test: a charge this month", user=teammate)
    use = caps.usage(team, teammate.pk, Decimal("0.05"))
    assert (use.spent, use.held, use.left) == (Decimal("0.02"), Decimal("0.01"), Decimal("0.02"))
    with pytest.raises(intake.SubmissionRefused) as refused:
        priced(teammate, team, 3)
    assert "you have $0.02 left; this submission would cost $0.03." in refused.value.errors[0]
    ledger.release(job, "test: released")  # a released hold no longer counts
    priced(teammate, team, 3)


def test_sandbox_jobs_do_not_count_against_a_cap(team, teammate):
    Membership.objects.filter(team=team, user=teammate).update(monthly_cap=Decimal("0"))
    with mock.patch.object(tasks, "enqueue_submit"):
        jobs = intake.submit_uploads(
            user=teammate, team=team, files=[upload()], choices=[("apixo", {})]
        )  # no key: the sandbox, priced but not billed
    assert jobs[0].sandbox


def test_the_upload_page_shows_the_cap_refusal(client, priced, team, teammate, settings):
    Membership.objects.filter(team=team, user=teammate).update(monthly_cap=Decimal("0.01"))
    signed_in(client, teammate)
    data = {"provider": "apixo", "apixo-resolution": "2k", "images": [upload(), upload("b.png")]}
    response = client.post("/", data, HTTP_HX_REQUEST="true")
    assert response.status_code == 422
    assert (
        "Your monthly cap in Studio is $0.01; you have $0.01 left; this submission would "
        "cost $0.02." in response.content.decode()
    )
    assert Job.objects.count() == 0
    assert list((settings.MEDIA_ROOT / "inputs").rglob("*.*")) == []  # nothing kept


def test_the_team_page_shows_each_members_cap_and_month(priced, owner_client, team, teammate):
    Membership.objects.filter(team=team, user=teammate).update(monthly_cap=Decimal("5"))
    priced(teammate, team, 2)
    html = page(owner_client, team)
    member = html[html.index(f'id="member-{teammate.pk}"') :]
    member = member[: member.index("</li>")]
    assert "held $0.02" in member and "cap $5.00" in member and "left $4.98" in member


# --- invitations -------------------------------------------------------------------------------
def link_in(message) -> str:
    (url,) = re.findall(r"https?://\S+/accounts/set-password/\S+/", message.body)
    return url


def test_inviting_a_new_address_makes_an_account_and_mails_a_one_time_link(
    owner_client, client, team, settings, django_capture_on_commit_callbacks
):
    settings.PUBLIC_BASE_URL = "https://portal.example.com"
    response = owner_client.post(
        f"/teams/{team.pk}/invite/", {"email": "Dan@Example.com", "role": "member"}
    )
    assert response.status_code == 302
    dan = User.objects.get(email="Dan@example.com")
    assert dan.username == "Dan@example.com" and not dan.has_usable_password()
    assert Membership.objects.get(team=team, user=dan).role == "member"
    (message,) = mail.outbox
    assert message.to == ["Dan@example.com"] and "Studio" in message.subject
    url = link_in(message)
    assert url.startswith("https://portal.example.com/accounts/set-password/")
    assert events(team) == ["alice invited Dan@example.com as member"]
    assert "set-password" not in "".join(events(team))  # the audit never holds the link

    path = url.removeprefix("https://portal.example.com")
    client.logout()
    form = client.get(path, follow=True)
    assert "Set your password" in form.content.decode() and "Dan@example.com" in (
        form.content.decode()
    )
    form_url = form.redirect_chain[-1][0]
    done = client.post(
        form_url, {"new_password1": "a-long-pass-9x", "new_password2": "a-long-pass-9x"}
    )
    assert done.status_code == 302 and done["Location"] == "/accounts/set-password/done/"
    dan.refresh_from_db()
    assert dan.check_password("a-long-pass-9x")
    signed = client.post(
        "/accounts/login/", {"username": "Dan@example.com", "password": "a-long-pass-9x"}
    )
    assert signed.status_code == 302  # signed in with the new password
    assert list(User.objects.get(pk=dan.pk).teams.all()) == [team]  # no personal team made
    client.logout()

    again = client.get(path, follow=True).content.decode()  # the same link, a second time
    assert "This link does not work any more" in again and 'name="new_password1"' not in again


def test_inviting_an_existing_account_adds_it_without_a_link(owner_client, team, outsider):
    response = owner_client.post(
        f"/teams/{team.pk}/invite/", {"email": "CAROL@example.com", "role": "manager"}
    )
    assert response.status_code == 302
    assert Membership.objects.get(team=team, user=outsider).role == "manager"
    assert mail.outbox == []
    assert events(team) == ["alice invited CAROL@example.com as manager"]
    html = owner_client.get(f"/teams/{team.pk}/").content.decode()
    assert "carol@example.com is now a manager of Studio. They sign in as carol." in html


def test_inviting_a_member_again_is_refused_but_a_pending_one_gets_a_new_link(
    owner_client, team, teammate
):
    again = owner_client.post(f"/teams/{team.pk}/invite/", {"email": "bob@example.com"})
    assert again.status_code == 422
    assert "bob@example.com is already a member of Studio." in again.content.decode()
    owner_client.post(f"/teams/{team.pk}/invite/", {"email": "dan@example.com"})
    owner_client.post(f"/teams/{team.pk}/invite/", {"email": "dan@example.com"})
    assert len(mail.outbox) == 2 and link_in(mail.outbox[0]) != ""
    assert events(team)[0] == "alice sent dan@example.com a new invitation link"


@pytest.mark.parametrize("email", ["", "not-an-address", "a@b", "x@@example.com"])
def test_a_bad_address_is_refused_plainly(owner_client, team, email):
    response = owner_client.post(f"/teams/{team.pk}/invite/", {"email": email})
    assert response.status_code == 422 and "is not an e-mail address." in response.content.decode()
    assert Membership.objects.filter(team=team).count() == 1 and mail.outbox == []


def test_a_username_taken_by_someone_else_gets_a_number(owner_client, team):
    User.objects.create_user("dan@example.com", "other@example.com")
    owner_client.post(f"/teams/{team.pk}/invite/", {"email": "dan@example.com"})
    assert User.objects.get(email="dan@example.com").username == "dan@example.com-2"
    assert "dan@example.com-2" in mail.outbox[0].body


def test_a_mail_server_failure_is_said_and_the_membership_stays(owner_client, team):
    with mock.patch.object(members, "send_mail", side_effect=OSError("refused")):
        response = owner_client.post(f"/teams/{team.pk}/invite/", {"email": "dan@example.com"})
    assert response.status_code == 302
    html = owner_client.get(f"/teams/{team.pk}/").content.decode()
    assert "could not be sent" in html
    assert Membership.objects.filter(team=team, user__email="dan@example.com").exists()


def test_the_invitation_token_never_reaches_a_log_line(owner_client, team, caplog):
    owner_client.post(f"/teams/{team.pk}/invite/", {"email": "dan@example.com"})
    url = link_in(mail.outbox[0])
    token = url.rstrip("/").rsplit("/", 1)[1]
    assert token not in scrub(f"GET {url} 200")
    assert "/accounts/set-password/" in scrub(f"GET {url} 200")
    assert token not in caplog.text
