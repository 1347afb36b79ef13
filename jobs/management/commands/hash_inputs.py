"""Record the content hash of jobs made before hashes were, so "never pay twice" finds
their results too (jobs/reuse.py). The daily housekeeping run does the same in slices;
this does it all at once, right after an upgrade. Safe to stop and run again."""

from django.core.management.base import BaseCommand

from jobs import reuse


class Command(BaseCommand):
    help = "Hash the stored originals of old succeeded jobs, so their results can be reused."

    def add_arguments(self, parser):
        parser.add_argument("--batch", type=int, default=200, help="Files per batch.")

    def handle(self, *, batch, **options):
        total = 0
        while True:
            hashed, more = reuse.hash_old_inputs(batch=batch, time_limit=10)
            total += hashed
            if not more:
                break
            self.stdout.write(f"{total} originals hashed so far…")
        self.stdout.write(f"Done: {total} originals hashed.")
