import signal

from django.core.management.base import BaseCommand

from jobs.tracker import Tracker


class Command(BaseCommand):
    help = "Keep unfinished jobs moving: poll running jobs, resubmit and refetch when due."

    def handle(self, **options):
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        self.stdout.write("Tracker running.")
        Tracker().run_forever(stop=lambda: stopping)
