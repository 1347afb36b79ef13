"""manage.py rebuild_rollups [--check]: recompute the ledger's rollups, or compare them."""

from django.core.management.base import BaseCommand, CommandError

from billing import rollups


class Command(BaseCommand):
    help = (
        "Recompute the spend rollups (daily spend, open holds) from the ledger; with "
        "--check, only compare them with a direct sum of the ledger and list differences."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--check", action="store_true", help="compare only; exit 1 if anything differs"
        )

    def handle(self, *args, check=False, **options):
        if check:
            problems = rollups.check()
            for problem in problems:
                self.stdout.write(problem)
            if problems:
                raise CommandError(f"{len(problems)} rollup difference(s) with the ledger.")
            self.stdout.write("Rollups match the ledger.")
            return
        counts = rollups.rebuild()
        self.stdout.write(
            f"Rebuilt: {counts['daily_spend']} daily spend cells, "
            f"{counts['open_holds']} open holds."
        )
