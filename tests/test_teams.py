from django.contrib.auth import get_user_model

from billing.models import Membership


def test_a_user_with_no_team_gets_a_personal_team_on_first_sign_in(client, db):
    user = get_user_model().objects.create_user("dana", password="pw-12345")
    response = client.post("/accounts/login/", {"username": "dana", "password": "pw-12345"})
    assert response.status_code == 302
    membership = Membership.objects.get(user=user)
    assert membership.role == "manager" and membership.team.name == "dana's team"
    client.logout()
    client.post("/accounts/login/", {"username": "dana", "password": "pw-12345"})
    assert Membership.objects.filter(user=user).count() == 1


def test_a_member_keeps_their_team(client, owner, team):
    client.post("/accounts/login/", {"username": "alice", "password": "pw-12345"})
    assert list(owner.teams.all()) == [team]


def test_a_wrong_password_is_told_plainly(client, owner):
    response = client.post("/accounts/login/", {"username": "alice", "password": "nope"})
    assert "do not match" in response.content.decode()


def test_the_upload_page_offers_a_team_choice_to_members_of_two(owner_client, owner, other_team):
    Membership.objects.create(team=other_team, user=owner)
    html = owner_client.get("/").content.decode()
    assert '<select name="team">' in html and "Agency" in html and "Studio" in html
