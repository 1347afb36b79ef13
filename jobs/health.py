"""/healthz: is every part of the portal doing its work? No login, no secrets, cheap.

- `/healthz/live`: this web process can reach its database (for a load balancer: a
  node that answers it can serve pages).
- `/healthz`: the whole portal: database, broker, storage, the tracker's heartbeat and
  each supervised cluster's proof of work (jobs/watchdog.py). 503 when any fails, for
  uptime checks.

Answered by a middleware at the top of the stack, before the HTTPS redirect and the
host check, so a load balancer probing a node by its address over plain HTTP gets the
answer and not a redirect or a 400.
"""

import json
import time
import uuid

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from django.http import HttpResponse
from django.utils import timezone

PATHS = {"/healthz", "/healthz/", "/healthz/live", "/healthz/live/"}
TRACKER_STALE = 10  # seconds without a tracker heartbeat
CLUSTER_STALE_CHECKS = 4  # supervisor check intervals without a heartbeat


def _check(name: str, checks: dict, probe) -> None:
    started = time.monotonic()
    try:
        detail = probe() or {}
        checks[name] = {"ok": detail.pop("ok", True), **detail}
    except Exception as exc:  # noqa: BLE001 - a failing part is reported, never raised
        # The class name only: an exception's text may hold an address or a password.
        checks[name] = {"ok": False, "error": exc.__class__.__name__}
    checks[name]["ms"] = round((time.monotonic() - started) * 1000, 1)


def database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"vendor": connection.vendor}


def broker() -> dict:
    from django_q.brokers import get_broker

    broker = get_broker()
    broker.ping()
    return {"kind": "redis" if settings.REDIS_URL else "orm", "queued": broker.queue_size()}


def storage() -> dict:
    name = default_storage.save(f"health/{uuid.uuid4().hex}", ContentFile(b"ok"))
    default_storage.delete(name)
    return {}


def tracker() -> dict:
    from jobs.models import Heartbeat

    beat = Heartbeat.objects.filter(name="tracker").first()
    if beat is None:
        return {"ok": False, "error": "no tracker has ever run"}
    age = (timezone.now() - beat.beat_at).total_seconds()
    return {"ok": age <= TRACKER_STALE, "heartbeat_age_s": round(age, 1)}


def clusters() -> dict:
    """Each supervised cluster's last verdict; stale or frozen ones fail."""
    from jobs.models import Heartbeat

    stale_after = settings.CLUSTER_CHECK_SECONDS * CLUSTER_STALE_CHECKS
    now = timezone.now()
    found = []
    for beat in Heartbeat.objects.filter(name__startswith="cluster:"):
        age = (now - beat.beat_at).total_seconds()
        if age > 3600:
            continue  # a machine long gone; its row is history, not a failure
        found.append(
            {
                "name": beat.name.removeprefix("cluster:"),
                "heartbeat_age_s": round(age, 1),
                "ok": age <= stale_after and not beat.detail.get("frozen"),
                "frozen": bool(beat.detail.get("frozen")),
                **{k: beat.detail.get(k) for k in ("waiting", "busy_workers", "restarts")},
                "last_task_started_s_ago": round(beat.detail.get("last_start_age", 0), 1),
            }
        )
    if not found:
        return {"ok": False, "error": "no cluster supervisor (manage.py cluster) is reporting"}
    return {"ok": all(c["ok"] for c in found), "clusters": found}


def report(everything: bool) -> dict:
    checks = {}
    _check("database", checks, database)
    if everything:
        _check("broker", checks, broker)
        _check("storage", checks, storage)
        _check("tracker", checks, tracker)
        _check("cluster", checks, clusters)
    return {"ok": all(c["ok"] for c in checks.values()), "checks": checks}


def last_run(schedule: str) -> dict | None:
    """When a django-q2 schedule's last task ended and how, and when it runs next (the
    task's record may be gone: django-q2 keeps only the latest successes)."""
    from django_q.models import Schedule, Task

    row = Schedule.objects.filter(name=schedule).values("next_run", "task").first()
    if row is None:
        return None
    task = Task.objects.filter(pk=row["task"]).values("stopped", "success").first()
    return {
        "next_run": row["next_run"],
        "at": task["stopped"] if task else None,
        "ok": task["success"] if task else None,
        "ran": bool(row["task"]),
    }


def overview() -> dict:
    """The admin's status box: /healthz's checks, by the same functions, and what an
    operator asks next: work waiting, the oldest job in flight, the last sweep and purge."""
    from jobs import retention
    from jobs.models import Job

    result = report(everything=True)
    in_flight = [Job.State.SUBMITTING, Job.State.RUNNING, Job.State.FETCHING]
    oldest = (
        Job.objects.filter(state__in=in_flight, submitted_at__isnull=False)
        .order_by("submitted_at", "pk")
        .only("pk", "state", "provider", "submitted_at")
        .first()
    )
    return {
        **result,
        "failing": [name for name, check in result["checks"].items() if not check["ok"]],
        "jobs_queued": Job.objects.filter(state=Job.State.QUEUED).count(),
        "oldest": oldest,
        "sweep": last_run("jobs.sweep"),
        "purge": last_run(retention.SCHEDULE),
        "last_purge": retention.last_purge(),
        "retention_days": settings.RETENTION_DAYS,
        "now": timezone.now(),
    }


class HealthCheckMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path not in PATHS:
            return self.get_response(request)
        result = report(everything="live" not in request.path)
        response = HttpResponse(
            json.dumps(result, indent=1),
            status=200 if result["ok"] else 503,
            content_type="application/json",
        )
        response["Cache-Control"] = "no-store"
        # A probe's 503 is its answer, not a server error: keep django.request from
        # logging one ERROR per probe while, say, the set is still booting.
        response._has_been_logged = True
        return response
