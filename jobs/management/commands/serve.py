"""Run the whole portal in one terminal: web server, django-q2 cluster and tracker.

One Ctrl-C stops everything; if any part dies, the others are stopped too, so the
portal never runs half-alive.
"""

import os
import signal
import subprocess
import sys
import time

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Start the web server and the background cluster together."

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")

    def handle(self, addrport, **options):
        manage = [sys.executable, os.path.abspath(sys.argv[0])]
        parts = {
            "web": [*manage, "runserver", addrport, "--noreload"],
            "worker": [*manage, "qcluster"],
            "tracker": [*manage, "track"],
        }
        procs = {name: subprocess.Popen(cmd) for name, cmd in parts.items()}
        self.stdout.write(f"Portal at http://{addrport}/ — press Ctrl-C to stop.")

        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping:
                for name, proc in procs.items():
                    if proc.poll() is not None:
                        self.stderr.write(f"{name} exited ({proc.returncode}); stopping.")
                        stopping = True
                time.sleep(0.5)
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 15
            for proc in procs.values():
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
