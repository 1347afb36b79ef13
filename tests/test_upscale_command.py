import re

import pytest
from django.core.management import CommandError, call_command

from jobs.models import Job
from tests.images import image_bytes


@pytest.fixture
def files(tmp_path):
    paths = []
    for name, fmt in (("one.png", "PNG"), ("two.jpg", "JPEG")):
        path = tmp_path / name
        path.write_bytes(image_bytes(100, 64, fmt=fmt))
        paths.append(str(path))
    return paths


# --wait polls the database while the tasks run, so these tests commit for real.
@pytest.mark.django_db(transaction=True)
def test_it_creates_one_job_per_file_and_waits(files, owner, team, sync_tasks, capsys):
    call_command(
        "upscale",
        *files,
        "--provider",
        "local",
        "--scale",
        "4",
        "--user",
        "alice",
        "--wait",
        "--timeout",
        "30",
    )
    jobs = list(Job.objects.order_by("pk"))
    assert [(j.input_name, j.state, j.output_width) for j in jobs] == [
        ("one.png", "succeeded", 400),
        ("two.jpg", "succeeded", 400),
    ]
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["job", str(jobs[0].pk), "queued"]
    assert f"job {jobs[1].pk}  succeeded   400x256       $0.0000" in out


def test_it_validates_like_the_upload_page(tmp_path, owner, team):
    bad = tmp_path / "fake.png"
    bad.write_text("hello")
    with pytest.raises(CommandError, match="fake.png: This is not an image we can read"):
        call_command("upscale", str(bad), "--user", "alice")
    assert Job.objects.count() == 0


def test_it_lists_allowed_values_for_a_bad_option(files, owner, team):
    with pytest.raises(CommandError, match=r"Scale '7' is not offered. Allowed: 2, 3, 4."):
        call_command("upscale", files[0], "--scale", "7", "--user", "alice")
    with pytest.raises(CommandError, match="has no option mode"):
        call_command("upscale", files[0], "--option", "mode=fast", "--user", "alice")
    with pytest.raises(CommandError, match="KEY=VALUE"):
        call_command("upscale", files[0], "--option", "mode", "--user", "alice")


@pytest.mark.django_db(transaction=True)
def test_wait_exits_non_zero_when_a_job_fails(files, owner, team, sync_tasks):
    from unittest import mock

    from jobs.providers import Failed
    from jobs.providers.local import LocalProvider

    failing = mock.patch.object(LocalProvider, "submit", return_value=Failed("boom", "It broke."))
    with failing, pytest.raises(CommandError, match="1 of 1 jobs did not succeed"):
        call_command("upscale", files[0], "--user", "alice", "--wait", "--timeout", "30")


def test_it_picks_the_team_by_name_and_refuses_a_foreign_one(files, owner, team, other_team):
    call_command("upscale", files[0], "--user", "alice", "--team", "Studio")
    assert Job.objects.get().team == team
    with pytest.raises(CommandError, match="not in a team 'Agency'"):
        call_command("upscale", files[0], "--user", "alice", "--team", "Agency")


def test_it_refuses_a_missing_file_and_an_unknown_user(files, owner):
    with pytest.raises(CommandError, match="no such file"):
        call_command("upscale", "/nope.png", "--user", "alice")
    with pytest.raises(CommandError, match="no user 'zed'"):
        call_command("upscale", files[0], "--user", "zed")


@pytest.mark.parametrize(
    "args,provider,options",
    [
        (["--provider", "pixazo", "--scale", "6"], "pixazo", {"scale": 6}),
        (["--provider", "pixelcut", "--scale", "4"], "pixelcut", {"scale": 4}),
        (
            ["--provider", "fal", "--scale", "3", "--option", "creativity=2"],
            "fal",
            {"scale": 3.0, "creativity": 2.0},
        ),
        (
            [
                "--provider",
                "ximilar",
                "--scale",
                "8",
                "--option",
                "model_type=gan",
                "--option",
                "mode=high_fidelity",
                "--option",
                "output_format=webp",
            ],
            "ximilar",
            {"scale": 8, "mode": "high_fidelity", "model_type": "gan", "output_format": "webp"},
        ),
        (
            ["--provider", "apixo", "--resolution", "8k", "--option", "output_format=png"],
            "apixo",
            {"resolution": "8k", "output_format": "png"},
        ),
    ],
)
def test_it_speaks_every_providers_options(files, owner, team, args, provider, options):
    call_command("upscale", files[0], "--user", "alice", *args)
    job = Job.objects.get()
    assert job.provider == provider and job.options == options
    assert job.sandbox is True


@pytest.mark.parametrize(
    "args,message",
    [
        (["--provider", "fal", "--scale", "500"], "Scale factor must be a number from 1 to 200"),
        (["--provider", "fal", "--option", "creativity=11"], "from 0 to 10"),
        (["--provider", "ximilar", "--option", "model_type=turbo"], "Allowed: classic, gan."),
        (["--provider", "pixazo", "--scale", "3"], "Allowed: 2, 4, 6, 8."),
        (["--provider", "apixo", "--scale", "2"], "APIXO has no option scale"),
        (["--provider", "nope"], "There is no provider called 'nope'."),
    ],
)
def test_it_refuses_bad_provider_options_listing_what_is_allowed(files, owner, team, args, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        call_command("upscale", files[0], "--user", "alice", *args)
    assert Job.objects.count() == 0
