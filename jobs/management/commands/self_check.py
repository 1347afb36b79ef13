"""Check that PUBLIC_BASE_URL and the enabled sandboxes answer (jobs/self_check.py).

gunicorn.conf.py runs `manage.py self_check --wait-for <bind>` once gunicorn listens, so
a production server warns at start-up as `bin/run` does; an operator may run it at any
time. Exit status 1 when something does not answer; with `-v 0` nothing but the log
lines is printed (the gunicorn hook's way: its log may be JSON, one object a line)."""

import sys

from django.core.management.base import BaseCommand, CommandError

from jobs import self_check


class Command(BaseCommand):
    help = "Check that PUBLIC_BASE_URL and the enabled sandboxes answer."

    def add_arguments(self, parser):
        parser.add_argument(
            "--wait-for",
            metavar="ADDRPORT",
            help="first wait (up to a minute) for our web server to answer at this address",
        )

    def handle(self, wait_for=None, verbosity=1, **options):
        result = self_check.when_listening(wait_for) if wait_for else self_check.run()
        if verbosity == 0:
            sys.exit(0 if result and result["ok"] else 1)  # the log lines said what failed
        if result is None:
            raise CommandError("No check was made: see the log above.")
        if not result["ok"]:
            raise CommandError("Not answering: " + ", ".join(f["url"] for f in result["failing"]))
        self.stdout.write(f"All addresses answer ({result['public_base_url']}).")
