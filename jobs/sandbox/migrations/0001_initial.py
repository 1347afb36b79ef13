"""Adopts the tables `jobs` 0003 created and `jobs` 0006 renamed: state only, so the
rows an install already has stay where they are."""

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = [("jobs", "0006_sandbox_leaves_jobs")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="SandboxFaults",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("provider", models.CharField(max_length=20, unique=True)),
                        ("latency", models.FloatField(blank=True, help_text="seconds; empty: default", null=True)),
                        ("error_status", models.PositiveSmallIntegerField(blank=True, help_text="429, 500 or 503 for the next `error_count` calls", null=True)),
                        ("error_count", models.PositiveIntegerField(default=0)),
                        ("error_on", models.CharField(choices=[("any", "any"), ("submit", "submit"), ("poll", "poll")], default="any", max_length=10)),
                        ("retry_after", models.PositiveSmallIntegerField(default=1)),
                        ("task_failure", models.CharField(blank=True, help_text="the provider's failure code for new tasks", max_length=100)),
                        ("slow_seconds", models.FloatField(default=0, help_text="every API answer waits this long")),
                        ("webhook", models.CharField(choices=[("normal", "Delivered once, on completion"), ("duplicate", "Delivered twice"), ("late", "Delivered late (after `late_seconds`)"), ("off", "Never delivered")], default="normal", max_length=10)),
                        ("late_seconds", models.FloatField(default=3.0)),
                        ("expired_results", models.BooleanField(default=False, help_text="result links already expired")),
                    ],
                    options={"verbose_name_plural": "sandbox faults"},
                ),
                migrations.CreateModel(
                    name="SandboxTask",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("provider", models.CharField(max_length=20)),
                        ("public_id", models.CharField(max_length=100, unique=True)),
                        ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                        ("latency", models.FloatField()),
                        ("params", models.JSONField(default=dict)),
                        ("input_name", models.CharField(blank=True, max_length=200)),
                        ("output_name", models.CharField(blank=True, max_length=200)),
                        ("output_width", models.PositiveIntegerField(null=True)),
                        ("output_height", models.PositiveIntegerField(null=True)),
                        ("failure_code", models.CharField(blank=True, max_length=100)),
                        ("canceled_at", models.DateTimeField(null=True)),
                        ("webhook_url", models.TextField(blank=True)),
                    ],
                ),
            ]
        )
    ]
