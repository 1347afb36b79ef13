"""Run the whole portal in one terminal: web server, supervised cluster and tracker.

One Ctrl-C stops everything. A part that dies is started again (and the log says so),
so a crash or a kill of the tracker or the cluster heals by itself in seconds; the
cluster's own supervisor (`manage.py cluster`) also restarts a cluster that froze.
"""

import os
import signal
import subprocess
import sys
import threading
import time

from django.core.management.base import BaseCommand

from jobs import self_check
from jobs.watchdog import stop_with_parent

RESTART_AFTER = 1.0  # seconds before a dead part is started again
MAX_QUICK_DEATHS = 5  # a part that dies this many times in a row within a minute is broken


class Command(BaseCommand):
    help = "Start the web server, the supervised cluster and the tracker together."

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")

    def handle(self, addrport, **options):
        manage = [sys.executable, os.path.abspath(sys.argv[0])]
        self.parts = {
            "web": [*manage, "runserver", addrport, "--noreload"],
            "cluster": [*manage, "cluster"],
            "tracker": [*manage, "track"],
        }
        self.procs = {name: self.spawn(name) for name in self.parts}
        self.deaths = {name: [] for name in self.parts}
        self.stdout.write(f"Portal at http://{addrport}/ — press Ctrl-C to stop.")
        # Once the web server answers: does PUBLIC_BASE_URL (where sandboxes and
        # webhooks reach us) lead here? A warning in the log and on /providers/ if not.
        threading.Thread(target=self_check.when_listening, args=(addrport,), daemon=True).start()

        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping:
                for name, proc in list(self.procs.items()):
                    if proc.poll() is not None and not stopping:
                        stopping = not self.revive(name, proc.returncode)
                time.sleep(0.5)  # this loop's own pace
        finally:
            for proc in self.procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 20
            for proc in self.procs.values():
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()

    def revive(self, name: str, status) -> bool:
        """Start a dead part again; False when it keeps dying at once (then stop all)."""
        now = time.monotonic()
        recent = [t for t in self.deaths[name] if now - t < 60] + [now]
        self.deaths[name] = recent
        if len(recent) >= MAX_QUICK_DEATHS:
            self.stderr.write(f"{name} keeps exiting ({status}); stopping the portal.")
            return False
        self.stderr.write(f"{name} exited ({status}); starting it again.")
        time.sleep(RESTART_AFTER)
        self.procs[name] = self.spawn(name)
        return True

    def spawn(self, name: str) -> subprocess.Popen:
        # Each part stops with us, even if we are killed.
        return subprocess.Popen(self.parts[name], preexec_fn=stop_with_parent)
