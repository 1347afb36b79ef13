# Issue #8: retries of a busy provider are bounded by time (RETRY_BUDGET_SECONDS from the
# first failure), not by a count spent in seconds.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0008_heartbeat_detail"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="retrying_since",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
