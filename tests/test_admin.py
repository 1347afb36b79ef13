from django.contrib.auth import get_user_model


def test_staff_see_every_teams_jobs_in_the_admin(
    client, make_job, owner, outsider, team, other_team
):
    make_job(owner, team, name="ours.png")
    make_job(outsider, other_team, name="theirs.png")
    staff = get_user_model().objects.create_superuser("root", "root@example.com", "pw-12345")
    client.force_login(staff)
    html = client.get("/admin/jobs/job/").content.decode()
    assert "ours.png" in html and "theirs.png" in html


def test_the_admin_never_shows_a_webhook_token(client, make_job, owner, team):
    job = make_job(owner, team)
    staff = get_user_model().objects.create_superuser("root", "root@example.com", "pw-12345")
    client.force_login(staff)
    html = client.get(f"/admin/jobs/job/{job.pk}/change/").content.decode()
    assert job.webhook_token not in html


def test_members_cannot_open_the_admin(owner_client):
    assert owner_client.get("/admin/jobs/job/").status_code == 302
