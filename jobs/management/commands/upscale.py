"""`manage.py upscale PATH... --provider local --scale 4 [--wait]`: the upload page for
scripts. Same validation, same jobs; one line per job."""

import time
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.management.base import BaseCommand, CommandError

from billing.models import Team
from billing.teams import ensure_personal_team, teams_of
from jobs import intake
from jobs.models import Job


def parse_options(pairs) -> dict:
    options = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep:
            raise CommandError(f"--option takes KEY=VALUE, not {pair!r}")
        options[key.strip()] = value.strip()
    return options


class Command(BaseCommand):
    help = "Upscale image files through a provider, exactly as the upload page does."

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", metavar="PATH")
        parser.add_argument("--provider", default="local")
        parser.add_argument("--scale", help="scale factor, for providers that take one")
        parser.add_argument("--resolution", help="resolution tier (2k, 4k, 8k), for APIXO")
        parser.add_argument(
            "--option", action="append", metavar="KEY=VALUE", help="any other provider option"
        )
        parser.add_argument("--team", help="team name or id (default: the user's first team)")
        parser.add_argument("--user", help="user name (default: the first superuser)")
        parser.add_argument("--wait", action="store_true", help="return when all jobs ended")
        parser.add_argument("--timeout", type=float, default=3600, help="seconds --wait waits")

    def handle(self, paths, provider, scale, resolution, option, team, user, wait, timeout, **_):
        user = self.user(user)
        team = self.team(user, team)
        raw = parse_options(option)
        if scale is not None:
            raw["scale"] = scale
        if resolution is not None:
            raw["resolution"] = resolution
        handles = []
        try:
            for path in paths:
                p = Path(path)
                if not p.is_file():
                    raise CommandError(f"{path}: no such file")
                f = File(p.open("rb"), name=p.name)
                handles.append(f)
            jobs = intake.submit_uploads(
                user=user, team=team, files=handles, choices=[(provider, raw)]
            )
        except intake.SubmissionRefused as refusal:
            raise CommandError("\n".join(refusal.errors)) from None
        finally:
            for f in handles:
                f.close()
        for job in jobs:
            self.line(job)
        if not wait:
            return
        jobs = self.wait(jobs, timeout)
        failed = [j for j in jobs if j.state != Job.State.SUCCEEDED]
        if failed:
            raise CommandError(f"{len(failed)} of {len(jobs)} jobs did not succeed")

    def wait(self, jobs, timeout):
        pending = {j.pk for j in jobs}
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise CommandError(
                    f"gave up waiting after {timeout:.0f} s; is the worker running "
                    "(python manage.py qcluster)?"
                )
            time.sleep(0.5)
            for job in Job.objects.filter(pk__in=pending).exclude(state__in=Job.ACTIVE_STATES):
                pending.discard(job.pk)
                self.line(job)
        return list(Job.objects.filter(pk__in=[j.pk for j in jobs]))

    def line(self, job):
        size = (
            f"{job.output_width}x{job.output_height}"
            if job.output_width
            else (f"~{job.predicted_width}x{job.predicted_height}")
        )
        price = job.price
        cost = f"${price.amount}" + ("" if price.verified else " (assumed price)")
        if job.sandbox:
            cost += " sandbox"
        extra = f"  {job.error_code}: {job.error_message}" if job.error_message else ""
        self.stdout.write(f"job {job.pk}  {job.state:<10}  {size:<12}  {cost}{extra}")

    def user(self, username):
        User = get_user_model()
        if username:
            try:
                return User.objects.get(username=username)
            except User.DoesNotExist:
                raise CommandError(f"no user {username!r}") from None
        found = User.objects.filter(is_superuser=True).order_by("pk").first()
        if not found:
            raise CommandError("no user: pass --user, or create one (createsuperuser)")
        return found

    def team(self, user, team):
        ensure_personal_team(user)
        teams = teams_of(user)
        if not team:
            return teams.first()
        found = teams.filter(pk=int(team)).first() if team.isdigit() else None
        found = found or teams.filter(name=team).first()
        if not found:
            names = ", ".join(t.name for t in Team.objects.filter(pk__in=teams)) or "none"
            raise CommandError(f"{user} is not in a team {team!r}; their teams: {names}")
        return found
