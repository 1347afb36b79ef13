"""Bare rows for tests that need a job to hang money or state on, not a real upload."""

from jobs.models import Job


def bare_job(team, **fields) -> Job:
    """A job whose input is a stand-in name (no file behind it)."""
    stand_in = {
        "provider": "local",
        "input_name": "p.png",
        "input_file": "inputs/p.png",
        "input_format": "PNG",
        "input_width": 10,
        "input_height": 10,
        "input_bytes": 100,
    }
    return Job.objects.create(team=team, **{**stand_in, **fields})
