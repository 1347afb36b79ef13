"""The History list, a page at a time, newest first, by keyset (cursor) pagination.

A page is "the 25 jobs just older (or newer) than this one", found by walking the
index on (team, -created_at, -id) or (-created_at, -id) from the cursor: page 500 costs
what page 1 costs, and no page counts the whole set. Jobs can share a `created_at`, so
the cursor is the pair (created_at, id), the same pair the list is ordered by.
"""

import datetime
from dataclasses import dataclass

from django.db.models import Q

PAGE_SIZE = 25
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
BAD_CURSOR = (
    "That page link was not understood (perhaps cut short when copied): "
    "showing the newest jobs instead."
)


def encode(created_at: datetime.datetime, pk: int) -> str:
    """A cursor as the URL carries it: microseconds since 1970 (integer arithmetic, so
    exact) and the id, e.g. "1767225600123456.4242"."""
    return f"{(created_at - EPOCH) // datetime.timedelta(microseconds=1)}.{pk}"


def decode(token: str) -> tuple[datetime.datetime, int] | None:
    """The (created_at, id) of a cursor, or None for anything that is not one."""
    micros, dot, pk = (token or "").partition(".")
    if not (dot and micros.isdigit() and pk.isdigit()) or len(micros) > 17:
        return None  # isdigit also refuses signs and spaces; 17 digits reach year 5138
    return EPOCH + datetime.timedelta(microseconds=int(micros)), int(pk)


def older_than(jobs, at, pk):
    # `created_at <= at` bounds the index scan; the OR only sorts out ties on `at`.
    # (A plain "created_at < at OR (created_at = at AND id < pk)" is no index bound.)
    return jobs.filter(Q(created_at__lt=at) | Q(id__lt=pk), created_at__lte=at)


def newer_than(jobs, at, pk):
    return jobs.filter(Q(created_at__gt=at) | Q(id__gt=pk), created_at__gte=at)


@dataclass
class Page:
    jobs: list
    older: str | None = None  # the cursor of the next page down ("Older")
    newer: str | None = None  # the cursor of the page above ("Newer"); None on the first
    note: str = ""  # said above the list, e.g. why a cursor was ignored

    @property
    def first(self) -> bool:
        return self.newer is None

    @property
    def complete(self) -> bool:
        """The whole set is on this page, so its length is the count, for free."""
        return self.first and self.older is None


def cursor(job) -> str:
    return encode(job.created_at, job.pk)


def made_since(jobs, after: str, *, size: int = PAGE_SIZE) -> list | None:
    """The jobs made after the cursor `after` ("": any), oldest first, at most `size`:
    what an open first page has not shown yet. Oldest first so that, with more than a
    page of new jobs, the next call goes on from the newest of these and skips none.
    None for a cursor that is not one."""
    key = decode(after) if after else (EPOCH, 0)
    if key is None:
        return None
    return list(newer_than(jobs, *key).order_by("created_at", "id")[:size])


def page(jobs, *, older: str = "", newer: str = "", size: int = PAGE_SIZE) -> Page:
    """One page of `jobs` (a queryset, filtered, not yet ordered) below the cursor
    `older`, above `newer`, or from the top. One query (two when "Newer" reaches the
    top, which then shows the newest page in full)."""
    token = older or newer
    key = decode(token) if token else None
    if token and key is None:
        return Page(**_top(jobs, size), note=BAD_CURSOR)
    if key and older:
        rows = list(older_than(jobs, *key).order_by("-created_at", "-id")[: size + 1])
        return Page(
            rows[:size],
            older=cursor(rows[size - 1]) if len(rows) > size else None,
            # The page we came from is newer ("Newer" from an empty page: the same cursor).
            newer=cursor(rows[0]) if rows else token,
        )
    if key and newer:
        rows = list(newer_than(jobs, *key).order_by("created_at", "id")[: size + 1])
        if len(rows) <= size:  # reached the top: the newest page, full
            return Page(**_top(jobs, size))
        rows = rows[:size][::-1]
        return Page(rows, older=cursor(rows[-1]), newer=cursor(rows[0]))
    return Page(**_top(jobs, size))


def _top(jobs, size) -> dict:
    rows = list(jobs.order_by("-created_at", "-id")[: size + 1])
    return {"jobs": rows[:size], "older": cursor(rows[size - 1]) if len(rows) > size else None}
