"""`manage.py cluster`: the django-q2 cluster, supervised. Use it instead of `qcluster`."""

from django.core.management.base import BaseCommand

from jobs.watchdog import ClusterWatch, manage_command


class Command(BaseCommand):
    help = (
        "Run the django-q2 cluster (qcluster) and restart it when it dies, or when work "
        "waits while it starts nothing (a frozen cluster)."
    )

    def handle(self, **options):
        ClusterWatch(manage_command()).run()
