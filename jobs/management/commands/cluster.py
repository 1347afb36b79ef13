"""`manage.py cluster`: the django-q2 clusters, supervised. Use it instead of `qcluster`."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from jobs.watchdog import Supervisor, manage_command


class Command(BaseCommand):
    help = (
        "Run a django-q2 cluster (qcluster) for each task queue (submit, finish, house) and "
        "restart one when it dies, or when work waits while it starts nothing (frozen)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--queues",
            default=",".join(settings.TASK_QUEUES),
            help="which queues this machine serves, e.g. submit,finish (default: all)",
        )

    def handle(self, queues, **options):
        kinds = [q.strip() for q in queues.split(",") if q.strip()]
        unknown = set(kinds) - set(settings.TASK_QUEUES)
        if unknown or not kinds:
            raise CommandError(f"--queues takes {', '.join(settings.TASK_QUEUES)}")
        Supervisor(manage_command(), kinds).run()
