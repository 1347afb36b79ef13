"""Several jobs' results as one ZIP, streamed: never built in memory or on disk.

zipfile writes to any object with write() and flush(); one that cannot seek makes it
put each entry's sizes and CRC in a data descriptor after the data. `_Pipe` is such an
object: the generator hands on whatever zipfile wrote so far, a chunk of each result at
a time, read from the storage in chunks (local disk or the bucket alike). Entries are
STORED: images are compressed already.
"""

import logging
import uuid
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.core.files.storage import default_storage
from django.http import StreamingHttpResponse
from django.utils import timezone
from django.utils.http import content_disposition_header

from billing.teams import teams_of
from jobs.models import Job

log = logging.getLogger(__name__)
CHUNK = 256 * 1024
MAX_JOBS = 500  # a History selection: ids in a query string


class Refused(Exception):
    """No ZIP: a sentence for the person and the HTTP status that goes with it."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


NOTHING = (
    "None of these jobs has a result to download: they failed, were canceled, are still "
    "running, or their files were deleted."
)


def batch_jobs(user, batch) -> list[Job]:
    """A submission's jobs, if it is one of the user's teams'."""
    return list(
        Job.objects.filter(team__in=teams_of(user), batch=batch)
        .select_related("deleted_by")
        .order_by("pk")
    )


def batch_summary(user, raw_batch: str) -> "Summary | None":
    """History's batch view: what the batch's ZIP holds (None for a bad batch id)."""
    try:
        batch = uuid.UUID(raw_batch)
    except ValueError:
        return None
    return Summary.of(batch_jobs(user, batch))


def selected_jobs(user, raw_ids: list[str]) -> list[Job]:
    """The jobs ticked in History (`?job=1&job=2`). Other teams' ids are passed over as
    if they did not exist."""
    if not raw_ids:
        raise Refused("Tick the jobs whose results you want, then download them as a ZIP.")
    if len(raw_ids) > MAX_JOBS:
        raise Refused(f"That is {len(raw_ids)} jobs: a ZIP holds at most {MAX_JOBS}. Select fewer.")
    if not all(raw.isdigit() for raw in raw_ids):
        raise Refused("Those are not job numbers.")
    jobs = list(
        Job.objects.filter(team__in=teams_of(user), pk__in={int(raw) for raw in raw_ids}).order_by(
            "pk"
        )
    )
    if not jobs:
        raise Refused("None of these jobs exists in your teams.", status=404)
    return jobs


def result_name(job: Job) -> str:
    """`<input stem>-<provider>-<W>x<H>.<ext>`: the download's name, and a ZIP entry's."""
    stem = job.input_name.rsplit(".", 1)[0]
    ext = job.output_file.name.rsplit(".", 1)[-1]
    return f"{stem}-{job.provider}-{job.output_width}x{job.output_height}.{ext}"


def has_result(job: Job) -> bool:
    return bool(
        job.state == Job.State.SUCCEEDED
        and job.output_file
        and not job.files_expired_at
        and not job.deleted_at
    )


@dataclass(frozen=True)
class Summary:
    """What a ZIP of these jobs holds: the button's words."""

    results: int
    left_out: int

    @classmethod
    def of(cls, jobs: Iterable[Job]) -> "Summary":
        jobs = list(jobs)
        results = sum(1 for job in jobs if has_result(job))
        return cls(results, len(jobs) - results)

    @property
    def label(self) -> str:
        return f"Download {self.results} result{'' if self.results == 1 else 's'} as ZIP"

    @property
    def left_out_note(self) -> str:
        if not self.left_out:
            return ""
        n = self.left_out
        return (
            f"{n} job{'' if n == 1 else 's'} without a result (failed, canceled, still "
            f"running or files deleted) {'is' if n == 1 else 'are'} left out."
        )


def entry_names(jobs: list[Job]) -> list[str]:
    """One name per job, made unique: a second photo-local-200x200.png is
    photo-local-200x200-2.png."""
    seen: set[str] = set()
    names = []
    for job in jobs:
        name = result_name(job)
        stem, dot, ext = name.rpartition(".")
        n = 1
        while name.lower() in seen:  # unzipping on Windows or macOS ignores case
            n += 1
            name = f"{stem}-{n}{dot}{ext}"
        seen.add(name.lower())
        names.append(name)
    return names


class _Pipe:
    """A write-only, unseekable file: zipfile writes into it, the generator empties it."""

    def __init__(self):
        self.parts: list[bytes] = []

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def stream(jobs: Iterable[Job]) -> Iterator[bytes]:
    """The ZIP of these jobs' results, chunk by chunk. Jobs without a result are passed
    over; so is a result missing from the storage (logged), as the response has started."""
    jobs = [job for job in jobs if has_result(job)]
    pipe = _Pipe()
    with zipfile.ZipFile(pipe, mode="w", compression=zipfile.ZIP_STORED) as archive:
        for job, name in zip(jobs, entry_names(jobs), strict=True):
            source = None
            try:
                source = default_storage.open(job.output_file.name, "rb")
                first = source.read(CHUNK)
            except Exception as exc:  # noqa: BLE001 - one lost file must not cut the rest
                log.warning("zip: job %s result unreadable: %s", job.pk, exc.__class__.__name__)
                if source is not None:
                    source.close()
                continue
            info = zipfile.ZipInfo(name, date_time=_date_time(job))
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16  # rw-r--r-- when unzipped
            info.file_size = job.output_bytes or 0  # lets zipfile choose ZIP64 if it must
            with source, archive.open(info, mode="w") as entry:
                chunk = first
                while chunk:
                    entry.write(chunk)
                    yield pipe.take()
                    chunk = source.read(CHUNK)
            yield pipe.take()
    yield pipe.take()  # the central directory


def _date_time(job: Job) -> tuple:
    moment = timezone.localtime(job.finished_at or job.created_at)
    return (max(moment.year, 1980), moment.month, moment.day, moment.hour, moment.minute, 0)


def response(jobs: list[Job], filename: str) -> StreamingHttpResponse:
    """The ZIP download; Refused (404) when not one of the jobs has a result."""
    if not any(has_result(job) for job in jobs):
        raise Refused(NOTHING, status=404)
    chunks = (chunk for chunk in stream(jobs) if chunk)
    reply = StreamingHttpResponse(chunks, content_type="application/zip")
    reply["Content-Disposition"] = content_disposition_header(True, filename)
    reply["Cache-Control"] = "private, no-store"
    return reply
