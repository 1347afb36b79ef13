# Issue #9, files that expire: one owner per stored input among existing jobs, and the
# daily schedule that deletes expired files.

import datetime

from django.db import migrations
from django.db.models import Min
from django.utils import timezone

PURGE = "purge-expired-files"


def one_owner_per_input(apps, schema_editor):
    """Jobs that share an input (batches, reruns) count its bytes once: the first job
    that stored it keeps input_owner, the others lose it."""
    Job = apps.get_model("jobs", "Job")
    first = Job.objects.order_by().values("input_file").annotate(first=Min("pk")).values("first")
    Job.objects.exclude(pk__in=first).update(input_owner=False)


def create_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    # Daily, at a quiet hour (03:00 UTC); catch_up is off, so a missed night is not
    # replayed, and a run that stops halfway is finished by the next (jobs/retention.py).
    now = timezone.now()
    first = now.replace(hour=3, minute=0, second=0, microsecond=0)
    if first <= now:
        first += datetime.timedelta(days=1)
    Schedule.objects.update_or_create(
        name=PURGE,
        defaults={
            "func": "jobs.tasks.purge_expired",
            "schedule_type": "D",  # daily
            "repeats": -1,
            "next_run": first,
        },
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=PURGE).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0010_retention"),
        ("django_q", "0018_task_success_index"),
    ]

    operations = [
        migrations.RunPython(one_owner_per_input, migrations.RunPython.noop),
        migrations.RunPython(create_schedule, remove_schedule),
    ]
