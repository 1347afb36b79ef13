"""The benchmark's Django-side steps, run by Stack.inside() on the stack's database:

    python bin/benchmarks/inside.py <step>    (arguments as JSON in BENCH_ARGS)

Each step prints its answer as JSON on the last line of its output.
"""

import datetime as dt
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def seed(jobs: int, ledger_rows: int) -> dict:
    from benchmarks import seed as seeding

    return seeding.run(jobs, ledger_rows)


def pick(days: int) -> dict:
    """What the page table asks for: who signs in, which jobs and teams, and the sizes
    the pages and the export should show."""
    from django.contrib.auth import get_user_model

    from benchmarks.seed import MANAGER, PASSWORD, SEARCH_WORD, STAFF
    from billing import spend
    from billing.models import LedgerEntry, Membership
    from jobs.api import tokens
    from jobs.models import Job

    staff = get_user_model().objects.get(username=STAFF)
    team = Membership.objects.get(user__username=MANAGER, role="manager").team_id
    until = dt.datetime.now(dt.UTC).date()
    since = until - dt.timedelta(days=days - 1)
    last = Job.objects.order_by("-pk").values_list("pk", flat=True).first()
    rng = random.Random(1)
    picks = rng.sample(range(1, last + 1), 200)
    finished = Job.objects.filter(pk__in=picks, state="succeeded").values_list("pk", flat=True)
    newest = list(Job.objects.order_by("-pk").values_list("pk", flat=True)[:20])
    everything = spend.Filters(since=since, until=until, include_sandbox=True)
    return {
        "password": PASSWORD,
        "staff": STAFF,
        "manager": MANAGER,
        "team": team,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "year_since": (until - dt.timedelta(days=364)).isoformat(),
        "search": SEARCH_WORD,
        "search_hits": Job.objects.filter(input_name__icontains=SEARCH_WORD).count(),
        "jobs": Job.objects.count(),
        "ledger": LedgerEntry.objects.count(),
        "job_pages": sorted(finished)[:20],
        "fragments": newest,
        "month_rows": spend.all_charges(staff, spend.Filters.default()).count(),
        "csv_rows": spend.exported(staff, everything).count(),
        # One API token per timed API row (bin/benchmarks/api.py), as a script makes one.
        "api_tokens": [tokens.create(staff, f"bench {n}")[1] for n in range(4)],
    }


# --- throughput -------------------------------------------------------------------------
def _bench_user():
    from django.contrib.auth import get_user_model

    from billing.teams import ensure_personal_team

    user, _ = get_user_model().objects.get_or_create(username="bench")
    return user, ensure_personal_team(user) or user.teams.first()


def direct_inputs(count: int, resolution: str = "2k") -> dict:
    """Inputs a plain client can hand to the sandbox: `count` jobs parked as running (no
    cluster or tracker runs yet, so nobody touches them) with our own signed input
    links, which the sandbox fetches from the portal exactly as it does for the portal's
    jobs."""
    from django.conf import settings
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from jobs import inbound
    from jobs.models import Job
    from tests.images import image_bytes

    user, team = _bench_user()
    data = image_bytes(64, 64)
    jobs = [
        Job(
            team=team,
            created_by=user,
            provider="apixo",
            options={"resolution": resolution, "output_format": "jpg"},
            sandbox=True,
            state=Job.State.RUNNING,
            input_name=f"direct-{i}.png",
            input_file=default_storage.save(f"inputs/direct/{i}.png", ContentFile(data)),
            input_format="PNG",
            input_width=64,
            input_height=64,
            input_bytes=len(data),
        )
        for i in range(count)
    ]
    jobs = Job.objects.bulk_create(jobs)
    return {
        "jobs": [j.pk for j in jobs],
        "urls": [inbound.input_url(j) for j in jobs],
        "key": settings.SANDBOX_API_KEY,
    }


def direct_done(jobs: list[int], tasks: list[str]) -> dict:
    """Put the parked jobs away (canceled) and say when each sandbox task finished."""
    from django.utils import timezone

    from jobs.models import Job
    from jobs.sandbox.models import SandboxTask

    Job.objects.filter(pk__in=jobs).update(state="canceled", finished_at=timezone.now())
    found = SandboxTask.objects.filter(public_id__in=tasks)
    return {t.public_id: t.completes_at.timestamp() for t in found}


def wait_ready(timeout: float) -> dict:
    """Wait until the tracker and a cluster have written their heartbeats."""
    from jobs.models import Heartbeat

    deadline = time.time() + timeout
    while time.time() < deadline:
        names = list(Heartbeat.objects.values_list("name", flat=True))
        if "tracker" in names and any(n.startswith("cluster:") for n in names):
            return {"ready": True, "heartbeats": names}
        time.sleep(0.5)
    return {"ready": False, "heartbeats": names}


def portal_run(count: int, provider: str, options: dict, timeout: float) -> dict:
    """Upload `count` images (batches of 50, like a big drop on the upload page), wait
    until they end, and measure from the jobs' own timestamps."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from jobs import intake
    from jobs.models import Job, JobEvent
    from jobs.sandbox.models import SandboxTask
    from tests.images import image_bytes

    user, team = _bench_user()
    data = image_bytes(64, 64)
    ids = []
    for i in range(0, count, 50):
        files = [
            SimpleUploadedFile(f"b{i + k}.png", data, "image/png")
            for k in range(min(50, count - i))
        ]
        choices = [(provider, options)]
        made = intake.submit_uploads(user=user, team=team, files=files, choices=choices)
        ids += [j.pk for j in made]
    deadline = time.time() + timeout
    while Job.objects.filter(pk__in=ids, state__in=Job.ACTIVE_STATES).exists():
        if time.time() > deadline:
            break
        time.sleep(0.5)
    jobs = list(Job.objects.filter(pk__in=ids))
    tasks = {t.public_id: t for t in SandboxTask.objects.filter(provider=provider)}
    noticed = {e.job_id: e.at for e in JobEvent.objects.filter(job_id__in=ids, state="fetching")}
    notice, stored = [], []
    for job in jobs:
        task = tasks.get(job.provider_task_id)
        if task is None or job.pk not in noticed:
            continue
        notice.append((noticed[job.pk] - task.completes_at).total_seconds())
        if job.finished_at:
            stored.append((job.finished_at - task.completes_at).total_seconds())
    ok = [j for j in jobs if j.state == "succeeded"]
    first = min(j.created_at for j in jobs)
    last = max((j.finished_at for j in ok), default=first)
    failures = {}
    for j in jobs:
        if j.state == "failed":
            key = f"{j.error_code}: {j.error_message[:90]}"
            failures[key] = failures.get(key, 0) + 1
    return {
        "jobs": count,
        "succeeded": len(ok),
        "failed": sum(j.state == "failed" for j in jobs),
        "unfinished": sum(j.is_active for j in jobs),
        "seconds": (last - first).total_seconds(),
        "notice": notice,
        "stored": stored,
        "failures": failures,
        "median_run": statistics.median(
            [(j.finished_at - j.created_at).total_seconds() for j in ok] or [0]
        ),
    }


if __name__ == "__main__":
    sys.path[:0] = [str(ROOT), str(ROOT / "bin")]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "upscaler_site.settings")
    import django

    django.setup()
    step = globals()[sys.argv[1]]
    print(json.dumps(step(**json.loads(os.environ.get("BENCH_ARGS") or "{}"))))
