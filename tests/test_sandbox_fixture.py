"""The sandbox fixture works end to end with the local provider and a real tracker."""

from jobs.models import Job


def test_a_local_job_settles_through_the_fixture(sandbox, submit):
    job = sandbox.settle(submit("local", scale=2))
    assert job.state == Job.State.SUCCEEDED
