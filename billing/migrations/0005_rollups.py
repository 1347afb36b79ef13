import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


# Frozen copy of billing.rollups.rebuild_sql() at the time of this migration.
def _statements(vendor):
    if vendor == "postgresql":
        day, total = "(created_at AT TIME ZONE 'UTC')::date", "SUM(amount)"
    else:  # SQLite: datetimes stored as UTC text; decimals as floats
        day, total = "date(created_at)", "ROUND(SUM(amount), 4)"
    return [
        f"""INSERT INTO billing_dailyspend
                (day, team_id, user_id, user_key, provider, sandbox, amount, count)
            SELECT {day}, team_id, user_id, COALESCE(user_id, 0), provider, sandbox,
                   {total}, COUNT(*)
            FROM billing_ledgerentry
            WHERE kind IN ('charge', 'correction')
            GROUP BY {day}, team_id, user_id, provider, sandbox""",
        """INSERT INTO billing_openhold
                (entry_id, job_id, team_id, provider, amount, sandbox, created_at)
            SELECT h.id, h.job_id, h.team_id, h.provider, h.amount, h.sandbox, h.created_at
            FROM billing_ledgerentry h
            WHERE h.kind = 'hold' AND NOT EXISTS (
                SELECT 1 FROM billing_ledgerentry r
                WHERE r.job_id = h.job_id AND r.kind = 'release')""",
    ]


def backfill(apps, schema_editor):
    """Fill both rollups from the ledger already written: one aggregate INSERT ... SELECT
    each (the database groups the rows; nothing is loaded into Python)."""
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("LOCK TABLE billing_ledgerentry IN SHARE MODE")
        for sql in _statements(connection.vendor):
            cursor.execute(sql)


def empty(apps, schema_editor):
    apps.get_model("billing", "DailySpend").objects.all().delete()
    apps.get_model("billing", "OpenHold").objects.all().delete()


class Migration(migrations.Migration):
    """Rollups of the ledger (billing/rollups.py): daily spend cells and open holds, so
    spend totals and budgets never scan the ledger. Backfilled from it here."""

    dependencies = [
        ("billing", "0004_ledger_open_holds_index"),
        ("jobs", "0011_purge_schedule"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="OpenHold",
            fields=[
                (
                    "entry",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to="billing.ledgerentry",
                    ),
                ),
                ("provider", models.CharField(max_length=20)),
                ("amount", models.DecimalField(decimal_places=4, max_digits=12)),
                ("sandbox", models.BooleanField(default=False)),
                ("created_at", models.DateTimeField()),
                (
                    "job",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="jobs.job",
                    ),
                ),
                (
                    "team",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="billing.team",
                    ),
                ),
            ],
        ),
        migrations.CreateModel(
            name="DailySpend",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("day", models.DateField()),
                ("user_key", models.BigIntegerField(default=0)),
                ("provider", models.CharField(max_length=20)),
                ("sandbox", models.BooleanField(default=False)),
                ("amount", models.DecimalField(decimal_places=4, default=0, max_digits=14)),
                ("count", models.PositiveIntegerField(default=0)),
                (
                    "team",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="billing.team",
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "verbose_name_plural": "daily spend",
                "indexes": [models.Index(fields=["team", "day"], name="daily_spend_team_day")],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("day", "team", "user_key", "provider", "sandbox"),
                        name="one_daily_spend_cell",
                    )
                ],
            },
        ),
        migrations.RunPython(backfill, empty),
    ]
