import logging
import signal

from django.core.management.base import BaseCommand

from jobs.tracker import Tracker

log = logging.getLogger("jobs.tracker")


class Command(BaseCommand):
    help = "Keep unfinished jobs moving: poll running jobs, resubmit and refetch when due."

    def handle(self, **options):
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        log.info("Tracker running.")  # a log line, in the format LOG_FORMAT names
        Tracker().run_forever(stop=lambda: stopping)
