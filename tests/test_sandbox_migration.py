"""The sandbox left the `jobs` app for its own: an install that had sandbox tasks and
fault settings keeps them (the tables are renamed, not recreated)."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("jobs", "0005_job_quote"), ("sandbox", None)]


@pytest.mark.django_db(transaction=True)
def test_moving_the_sandbox_to_its_own_app_keeps_its_rows():
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(BEFORE)
    old = executor.loader.project_state([BEFORE[0]]).apps
    old.get_model("jobs", "SandboxFaults").objects.create(provider="fal", error_status=429)
    old.get_model("jobs", "SandboxTask").objects.create(
        provider="fal", public_id="kept-1", latency=2.0, params={"width": 10}
    )

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(latest)

    from jobs.sandbox.models import SandboxFaults, SandboxTask

    assert SandboxTask.objects.get(public_id="kept-1").params == {"width": 10}
    assert SandboxFaults.objects.get(provider="fal").error_status == 429
    assert SandboxTask._meta.db_table == "sandbox_sandboxtask"
    assert "jobs_sandboxtask" not in connection.introspection.table_names()
