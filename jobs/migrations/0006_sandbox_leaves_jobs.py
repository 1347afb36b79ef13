"""The sandbox models move to their own app (`jobs.sandbox`, label `sandbox`).

The tables are renamed, not recreated, so an existing install keeps its sandbox tasks and
fault settings; the `sandbox` app's first migration adopts them in its own state."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("jobs", "0005_job_quote")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.AlterModelTable("sandboxtask", "sandbox_sandboxtask"),
                migrations.AlterModelTable("sandboxfaults", "sandbox_sandboxfaults"),
            ],
            state_operations=[
                migrations.DeleteModel("SandboxTask"),
                migrations.DeleteModel("SandboxFaults"),
            ],
        )
    ]
