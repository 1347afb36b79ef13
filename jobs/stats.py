"""Figures for the providers page: recent success rate, median time, last error, and
what the start-up self-check found unreachable."""

import statistics
from datetime import timedelta

from django.utils import timezone

from jobs.models import Job
from jobs.providers import all_providers

WINDOW = timedelta(days=30)


def provider_stats(jobs):
    since = timezone.now() - WINDOW
    rows = []
    for provider in all_providers():
        recent = jobs.filter(provider=provider.slug, created_at__gte=since)
        # A reused result (jobs/reuse.py) was not the provider's work: not its figures.
        recent = recent.filter(reused_from__isnull=True)
        ended = list(
            recent.filter(state__in=[Job.State.SUCCEEDED, Job.State.FAILED])
            .order_by("-finished_at")
            .values("state", "created_at", "finished_at")[:500]
        )
        done = [j for j in ended if j["state"] == Job.State.SUCCEEDED]
        last_failed = recent.filter(state=Job.State.FAILED).order_by("-finished_at").first()
        rows.append(
            {
                "provider": provider,
                "ended": len(ended),
                "success_rate": round(100 * len(done) / len(ended)) if ended else None,
                "median": timedelta(
                    seconds=statistics.median(
                        (j["finished_at"] - j["created_at"]).total_seconds() for j in done
                    )
                )
                if done
                else None,
                "last_error": last_failed,
            }
        )
    return rows


def unreachable():
    """The last start-up self-check (jobs/self_check.py) when something did not answer:
    `{"failing": [{"what", "url"}], "at"}`; None when all answered or none has run."""
    from jobs import self_check

    beat = self_check.latest()
    if beat is None or beat.detail.get("ok", True):
        return None
    failing = beat.detail.get("failing", [])
    ours = any(f.get("what") == "PUBLIC_BASE_URL" for f in failing)
    return {"failing": failing, "ours": ours, "at": beat.beat_at}
