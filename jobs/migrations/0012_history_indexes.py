# Issue #10, fast at scale: the History page pages by a (created_at, id) cursor, so its
# indexes end in (-created_at, -id): one team's jobs (team, -created_at, -id), which also
# serves what job_team_recent (team, -created_at) did, and every team's (-created_at, -id).
# On PostgreSQL, names are searched through a trigram index (pg_trgm) on UPPER(input_name):
# the expression Django's `icontains` compares (UPPER(input_name) LIKE UPPER('%q%')), so
# the ORM's ordinary lookup uses it. SQLite has no such index; it keeps scanning.

from django.conf import settings
from django.db import migrations, models

# Written out: OpClass on an expression inside GinIndex renders as a syntax error here.
CREATE_TRIGRAMS = (
    "CREATE INDEX IF NOT EXISTS job_name_trgm ON jobs_job USING gin (UPPER(input_name) gin_trgm_ops)"
)


def add_name_trigrams(apps, schema_editor):
    # PostgreSQL only (GIN and pg_trgm do not exist elsewhere), so not in Job.Meta.indexes:
    # the model state stays the same on every database.
    if schema_editor.connection.vendor == "postgresql":
        # pg_trgm is a trusted extension (PostgreSQL 13+): a database owner may create it.
        schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        schema_editor.execute(CREATE_TRIGRAMS)


def drop_name_trigrams(apps, schema_editor):
    # The extension stays: other objects may use it by now.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS job_name_trgm")


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0004_ledger_open_holds_index"),
        ("jobs", "0011_purge_schedule"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddIndex(
            model_name="job",
            index=models.Index(fields=["team", "-created_at", "-id"], name="job_team_history"),
        ),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(fields=["-created_at", "-id"], name="job_history"),
        ),
        migrations.RemoveIndex(
            model_name="job",
            name="job_team_recent",
        ),
        migrations.RunPython(add_name_trigrams, drop_name_trigrams),
    ]
