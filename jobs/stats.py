"""Figures for the providers page: recent success rate, median time, last error."""

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
