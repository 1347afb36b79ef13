"""Personal API tokens as `Authorization: Bearer <token>` (jobs/api/tokens.py makes them),
and the rate limit per token: API_RATE_PER_MINUTE requests in each clock minute, then 429
with Retry-After until the next minute.

Hand-written rather than ninja's throttles: their sliding log is a list read from the cache
and written back (concurrent requests overwrite each other's counts), their 429 is not our
problem+json, and they attach to the API object, not to the token check. A fixed-window
counter is one atomic `incr` (Redis INCR; a lock in LocMemCache)."""

import math
import time

from django.conf import settings
from django.core.cache import cache
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
    key = f"api-rate:{token.prefix}:{window}"  # the prefix, never the secret
    cache.add(key, 0, timeout=WINDOW * 2)
    try:
        count = cache.incr(key)
    except ValueError:  # evicted between add and incr: count this one as the first
        cache.set(key, 1, timeout=WINDOW * 2)
        count = 1
    if count > limit:
        wait = max(1, math.ceil((window + 1) * WINDOW - now))
        raise Problem(
            429,
            f"Too many requests: this token may make {limit} a minute. "
            f"Try again in {wait} seconds.",
            headers={"Retry-After": str(wait)},
        )
