"""What the cluster keeps of a finished task: failures (the admin's Failed tasks), not
successes, whose bookkeeping cost most of the cluster's CPU per job (issue #10)."""

import uuid
from multiprocessing import Queue, Value

from django.utils import timezone
from django_q.models import Task
from django_q.monitor import monitor
from django_q.worker import worker


def succeed():
    return "done"


def fail():
    raise RuntimeError("the provider said no")


def run(*funcs):
    """Run tasks as a cluster does: a worker executes them, the monitor stores results."""
    tasks, results = Queue(), Queue()
    for func in funcs:
        tasks.put(
            {
                "id": uuid.uuid4().hex,
                "name": func,
                "func": f"{__name__}.{func}",
                "args": (),
                "kwargs": {},
                "started": timezone.now(),
            }
        )
    tasks.put("STOP")
    worker(tasks, results, Value("f", -1))
    results.put("STOP")
    monitor(results)


def test_failed_tasks_are_kept_and_successful_ones_are_not(transactional_db):
    run("succeed", "fail", "succeed")
    (kept,) = Task.objects.all()
    assert kept.name == "fail" and kept.success is False
    assert "the provider said no" in kept.result
