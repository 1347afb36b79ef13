import datetime

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from billing.models import Team
from jobs import retention
from jobs.imaging import human_bytes


def _moment(value: str) -> datetime.datetime:
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--now wants an ISO date or time, not {value!r}") from None
    return moment if timezone.is_aware(moment) else moment.replace(tzinfo=datetime.UTC)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


class Command(BaseCommand):
    help = (
        "Delete the files (inputs, results, thumbnails) of jobs that finished more than "
        "RETENTION_DAYS ago; the jobs themselves, their history and cost stay."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run", action="store_true", help="List what would be deleted; delete nothing."
        )
        parser.add_argument(
            "--now", type=_moment, help="Judge ages as of this ISO time (UTC unless it says)."
        )
        parser.add_argument("--batch", type=int, default=500, help="Jobs per batch.")

    def handle(self, *, dry_run, now, batch, verbosity, **options):
        now = now or timezone.now()
        days = settings.RETENTION_DAYS
        if not days:
            self.stdout.write("RETENTION_DAYS is 0: files are kept for ever; nothing to do.")
            return
        cut = retention.cutoff(now)
        self.stdout.write(
            f"{'Dry run: ' if dry_run else ''}files of jobs that finished before "
            f"{cut:%Y-%m-%d %H:%M} UTC ({days} days before {now:%Y-%m-%d %H:%M})."
        )
        teams = {}

        def listed(item):
            if not dry_run and verbosity < 2:
                return
            team = teams.get(item.team_id) or Team.objects.get(pk=item.team_id).name
            teams[item.team_id] = team
            self.stdout.write(
                f"  #{item.job_id}  {team}  finished {item.finished_at:%Y-%m-%d}  "
                f"{_plural(len(item.files), 'file')}, {human_bytes(item.bytes)}"
            )

        report = retention.purge(now, batch=batch, dry_run=dry_run, each=listed)
        names = dict(Team.objects.filter(pk__in=report.teams).values_list("pk", "name"))
        for team_id, tally in sorted(report.teams.items(), key=lambda kv: names[kv[0]]):
            self.stdout.write(
                f"{names[team_id]}: {_plural(tally.jobs, 'job')}, "
                f"{_plural(tally.files, 'file')}, {human_bytes(tally.bytes)}"
            )
        verb = "would delete" if dry_run else "deleted"
        self.stdout.write(
            f"Total: {verb} {_plural(report.files, 'file')} ({human_bytes(report.bytes)}, "
            f"thumbnails not counted) of {_plural(report.jobs, 'job')}."
        )
        if report.failed:
            self.stderr.write(
                f"{_plural(report.failed, 'job')} kept files the storage would not delete; "
                "the next purge tries again."
            )
