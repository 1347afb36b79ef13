"""Personal API tokens as `Authorization: Bearer <token>` (jobs/api/tokens.py makes them),
and the rate limit per token: API_RATE_PER_MINUTE requests in each clock minute, then 429
with Retry-After until the next minute.

Hand-written rather than ninja's throttles: their sliding log is a list read from the cache
and written back (concurrent requests overwrite each other's counts), their 429 is not our
problem+json, and they attach to the API object, not to the token check. A fixed-window
counter is one atomic step: Redis INCR when REDIS_URL is set, else one conditional
UPDATE of the token's row (settings.API_RATE_COUNTER). Either way every web process and
machine counts into the same number; a per-process memory count would let N workers
allow N times the limit."""

import math
import time

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Case, F, Value, When
from ninja.security import HttpBearer

from jobs.api import tokens
from jobs.api.problems import Problem

WINDOW = 60  # seconds


class TokenAuth(HttpBearer):
    def authenticate(self, request, token: str):
        found = tokens.verify(token)
        if found is None:
            return None  # ninja answers 401 (problems.install words it)
        request.user = found.user
        request.api_token = found
        check_rate(found)
        return found


def check_rate(token, now: float | None = None) -> None:
    """Count this request against the token's minute; Problem 429 past the limit."""
    limit = settings.API_RATE_PER_MINUTE
    if limit <= 0:
        return  # 0: no limit
    now = time.time() if now is None else now
    window = int(now // WINDOW)
    if settings.API_RATE_COUNTER == "cache":
        count = _count_in_cache(token, window)
    else:
        count = _count_in_database(token, window)
    if count > limit:
        wait = max(1, math.ceil((window + 1) * WINDOW - now))
        raise Problem(
            429,
            f"Too many requests: this token may make {limit} a minute. "
            f"Try again in {wait} seconds.",
            headers={"Retry-After": str(wait)},
        )


def _count_in_cache(token, window: int) -> int:
    key = f"api-rate:{token.prefix}:{window}"  # the prefix, never the secret
    cache.add(key, 0, timeout=WINDOW * 2)
    try:
        return cache.incr(key)
    except ValueError:  # evicted between add and incr: count this one as the first
        cache.set(key, 1, timeout=WINDOW * 2)
        return 1


def _count_in_database(token, window: int) -> int:
    """A new minute starts the count at 1, the same minute adds 1: one UPDATE (its SET
    reads the row as it was), read back in the same transaction while it holds the row's
    lock, so two processes never see the same count."""
    from jobs.models import ApiToken

    row = ApiToken.objects.filter(pk=token.pk)
    with transaction.atomic():
        row.update(
            rate_count=Case(When(rate_window=window, then=F("rate_count") + 1), default=Value(1)),
            rate_window=window,
        )
        return row.values_list("rate_count", flat=True).get()
