from django.db import migrations, models


class Migration(migrations.Migration):
    """usage() reads a team's month of charges and all its open holds in one query."""

    dependencies = [
        ("billing", "0003_ship_price_books"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="ledgerentry",
            index=models.Index(fields=["team", "kind", "created_at"], name="ledger_team_kind_time"),
        ),
    ]
