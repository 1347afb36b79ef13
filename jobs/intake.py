"""Turning uploads into jobs. The upload page, "run again" and `manage.py upscale` all
come through here, so they validate the same way.

Everything is checked before anything is stored: one bad file or one option a provider
cannot take refuses the whole submission with a message per problem. The cheap checks
come first: files are judged by their headers (size, format, pixels, every provider
limit) before any pixel is decoded, so a decompression bomb costs nothing to refuse.
"""

import hashlib
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from django.conf import settings
from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from billing import books, ledger, money
from jobs import approvals, imaging, lifecycle, retention, tasks
from jobs import reuse as reuses
from jobs.imaging import ImageInfo, ImageRefused
from jobs.models import Job
from jobs.providers import Provider, Refusal, get_provider


class SubmissionRefused(Exception):
    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class Selection:
    provider: Provider
    options: dict


@dataclass(frozen=True)
class Upload:
    """A file as it came from the browser or the command line, measured by its header;
    `thumb` is set once its pixels have been decoded."""

    name: str
    file: object
    info: ImageInfo
    thumb: bytes = b""


@dataclass(frozen=True)
class StoredInput:
    name: str
    file_name: str
    thumb_name: str
    info: ImageInfo


def select(choices: Sequence[tuple[str, Mapping]]) -> list[Selection]:
    """(provider slug, raw options) pairs -> validated selections."""
    errors, selections = [], []
    if not choices:
        raise SubmissionRefused(["Pick at least one provider."])
    for slug, raw in choices:
        try:
            provider = get_provider(slug)
        except KeyError:
            errors.append(f"There is no provider called {slug!r}.")
            continue
        if not provider.available:
            errors.append(provider.unavailable_reason)
            continue
        try:
            selections.append(Selection(provider, provider.clean_options(raw)))
        except Refusal as refusal:
            errors.append(f"{provider.name}: {refusal.message}")
    if errors:
        raise SubmissionRefused(errors)
    return selections


def inspect(files) -> list[Upload]:
    """Read every file's header; refuse the lot if any is bad, naming each bad one."""
    if not files:
        raise SubmissionRefused(["Choose at least one image."])
    errors, uploads = [], []
    for f in files:
        name = display_name(f.name)
        try:
            uploads.append(Upload(name, f, imaging.inspect_upload(f, f.size)))
        except ImageRefused as refusal:
            errors.append(f"{name}: {refusal.message}")
    if errors:
        raise SubmissionRefused(errors)
    return uploads


def decode(uploads: Sequence[Upload]) -> list[Upload]:
    """Decode the pixels (making the thumbnail), once every header check has passed."""
    errors, decoded = [], []
    for upload in uploads:
        try:
            thumb = imaging.thumbnail(upload.file)
        except ImageRefused as refusal:
            errors.append(f"{upload.name}: {refusal.message}")
            continue
        finally:
            upload.file.seek(0)
        decoded.append(replace(upload, thumb=thumb))
    if errors:
        raise SubmissionRefused(errors)
    return decoded


def check_limits(provider: Provider, info: ImageInfo, options) -> None:
    """The provider's own limits, then ours: no result larger than we would store."""
    provider.check(info, options)
    width, height = provider.output_size(info, options)
    if width * height > settings.MAX_RESULT_PIXELS:
        raise Refusal(
            f"The result would be {width}x{height} ({width * height / 1e6:.0f} MP); the portal "
            f"stores results up to {settings.MAX_RESULT_PIXELS / 1e6:g} MP. Pick a smaller "
            "scale.",
            "output_too_large",
        )


def check(infos: Sequence[tuple[str, ImageInfo]], selections: Sequence[Selection]) -> None:
    errors = []
    for name, info in infos:
        for sel in selections:
            try:
                check_limits(sel.provider, info, sel.options)
            except Refusal as refusal:
                errors.append(f"{name} with {sel.provider.name}: {refusal.message}")
    if errors:
        raise SubmissionRefused(errors)


def display_name(name: str) -> str:
    # Only ever shown, never used as a path.
    return (name or "image").replace("\\", "/").rsplit("/", 1)[-1][:200] or "image"


class _Hashing(File):
    """A file that hashes its bytes as the storage reads them (local storage reads it in
    chunks, S3 with read(); a storage that seeks back and reads again adds nothing twice)."""

    def __init__(self, file):
        super().__init__(file)
        self.sha = hashlib.sha256()
        self.hashed = 0  # bytes hashed so far, from the start

    def read(self, *args):
        at = self.file.tell()
        data = self.file.read(*args)
        if at <= self.hashed < at + len(data):
            self.sha.update(data[self.hashed - at :])
            self.hashed = at + len(data)
        return data


def store(upload: Upload) -> StoredInput:
    key = uuid.uuid4().hex
    month = timezone.now().strftime("%Y/%m")
    upload.file.seek(0)
    hashing = _Hashing(upload.file)
    file_name = default_storage.save(f"inputs/{month}/{key}.{upload.info.extension}", hashing)
    sha = hashing.sha.hexdigest()
    if hashing.hashed != upload.info.size_bytes:  # the storage read it some other way
        sha = _sha256(upload.file)
    thumb_name = default_storage.save(f"thumbs/{month}/{key}-in.webp", ContentFile(upload.thumb))
    info = replace(upload.info, sha256=sha)
    return StoredInput(upload.name, file_name, thumb_name, info)


def submit_uploads(
    *, user, team, files, choices, email_when_done=False, reuse=True, fresh=(), caller=None
) -> list[Job]:
    """`reuse`: an image already done with the same provider and options reuses that
    result for free (jobs/reuse.py), except the lines named in `fresh` ("run again":
    `reuse.line_key(provider, sha256)`). `caller`: see create_jobs."""
    selections = select(choices)
    uploads = inspect(files)
    check([(u.name, u.info) for u in uploads], selections)
    try:
        check_budget(team, [u.info for u in uploads], selections)
    except SubmissionRefused:
        if not reuse:
            raise
        # Over at full price, but images done before are free: only then are the files
        # read for their hash before being stored (storing hashes them anyway).
        uploads = [replace(u, info=replace(u.info, sha256=_sha256(u.file))) for u in uploads]
        infos = [u.info for u in uploads]
        check_budget(team, infos, selections, free=reusable(team, infos, selections, fresh))
    uploads = decode(uploads)
    stored = [store(u) for u in uploads]
    try:
        return create_jobs(
            user=user,
            team=team,
            inputs=stored,
            selections=selections,
            email_when_done=email_when_done,
            reuse=reuse,
            fresh=fresh,
            caller=caller,
        )
    except SubmissionRefused:
        for s in stored:  # a concurrent submission took the budget first
            default_storage.delete(s.file_name)
            default_storage.delete(s.thumb_name)
        raise


def check_budget(team, infos, selections, free=()) -> None:
    """Refuse an over-budget submission before anything is stored. `free`: the lines
    (reuse.line_key) that will reuse a result, so cost nothing."""
    wanted = sum(
        (
            quote_for(sel, info)[0].amount
            for info in infos
            for sel in selections
            if not sel.provider.is_sandbox
            and reuses.line_key(sel.provider.slug, info.sha256) not in free
        ),
        Decimal(0),
    )
    try:
        ledger.check(team, wanted)
    except ledger.OverBudget as refusal:
        raise SubmissionRefused([refusal.message]) from None


def _sha256(file) -> str:
    hashing = _Hashing(file)
    for _chunk in hashing.chunks():
        pass
    file.seek(0)
    return hashing.sha.hexdigest()


def reusable(team, infos, selections, fresh=()) -> set[str]:
    """The lines (reuse.line_key) of these hashed images that will reuse a result."""
    done = reuses.stored_results(team, [info.sha256 for info in infos])
    keys = set()
    for info in infos:
        for sel in selections:
            key = reuses.line_key(sel.provider.slug, info.sha256)
            options = sel.provider.resolve_options(sel.options, info)
            if key not in fresh and reuses.pick(done, info.sha256, sel.provider, options):
                keys.add(key)
    return keys


def quote_for(sel: Selection, info: ImageInfo):
    width, height = sel.provider.output_size(info, sel.options)
    return books.quote(sel.provider.slug, sel.provider.name, width, height, sel.options)


def rerun(job: Job, *, user, choices, caller=None) -> list[Job]:
    """New jobs from a job's stored input, with other options allowed."""
    # Refused once the job is past retention, not only once the purge has run: a new
    # job started then would use an input the purge may be deleting.
    if retention.is_past_retention(job):
        raise SubmissionRefused(
            ["This job's files have expired: its original was deleted. Upload it again."]
        )
    selections = select(choices)
    info = ImageInfo(
        job.input_format, job.input_width, job.input_height, input_alpha(job), job.input_bytes
    )
    check([(job.input_name, info)], selections)
    check_budget(job.team, [info], selections)
    info = replace(info, sha256=job.input_sha256)
    stored = StoredInput(job.input_name, job.input_file.name, job.input_thumb.name, info)
    return create_jobs(
        user=user,
        team=job.team,
        inputs=[stored],
        selections=selections,
        source_job=job,
        caller=caller,
    )


def input_alpha(job: Job) -> bool:
    """Whether a stored input has transparency (its header only; a JPEG never has)."""
    if job.input_format == "JPEG" or not job.input_file:
        return False
    try:
        with job.input_file.open("rb") as stream:
            return imaging.header_has_alpha(stream)
    except OSError:
        return False


def create_jobs(
    *,
    user,
    team,
    inputs,
    selections,
    source_job=None,
    email_when_done=False,
    reuse=False,
    fresh=(),
    caller=None,
) -> list[Job]:
    """`email_when_done`: the submitter wants an e-mail when a long batch ends
    (jobs/notices.py). `reuse`/`fresh`: see submit_uploads ("run again" never reuses).
    `caller`: the API's {"api_token", "webhook_url"} (jobs/api/jobs.py), stored as the
    jobs are made, so that even a job that ends at once (a reuse) sends its event."""
    batch = uuid.uuid4()
    created, reused = [], {}  # reused: job -> the job whose result it takes
    done = reuses.stored_results(team, [s.info.sha256 for s in inputs]) if reuse else []
    with transaction.atomic():
        for stored in inputs:
            for n, sel in enumerate(selections):
                # "Keep transparency" becomes the format this image needs: the job
                # stores (and sends) the value the provider's contract takes.
                sel = replace(sel, options=sel.provider.resolve_options(sel.options, stored.info))
                width, height = sel.provider.output_size(stored.info, sel.options)
                quote, book = quote_for(sel, stored.info)
                sha = stored.info.sha256
                original = None
                if reuses.line_key(sel.provider.slug, sha) not in fresh:
                    original = reuses.pick(done, sha, sel.provider, sel.options)
                explanation = quote.explanation
                if original:  # kept as what it would have cost: "saved by reuse"
                    explanation = f"Reused: not charged. It would have cost: {explanation}"
                job = Job.objects.create(
                    team=team,
                    created_by=user,
                    batch=batch,
                    source_job=source_job,
                    provider=sel.provider.slug,
                    options=sel.options,
                    sandbox=sel.provider.is_sandbox,
                    input_name=stored.name,
                    input_file=stored.file_name,
                    input_thumb=stored.thumb_name,
                    input_format=stored.info.format,
                    input_width=stored.info.width,
                    input_height=stored.info.height,
                    input_bytes=stored.info.size_bytes,
                    input_sha256=sha,
                    # The job that stored the file counts its bytes; the others of its
                    # batch, and reruns, share it (jobs/retention.py).
                    input_owner=n == 0 and source_job is None,
                    predicted_width=width,
                    predicted_height=height,
                    quoted_amount=quote.amount,
                    quote_explanation=explanation[:300],
                    price_book=book,
                    email_when_done=email_when_done,
                    **(caller or {}),
                )
                sandbox = " (sandbox - not billed)" if job.sandbox else ""
                price = f"quoted {money.price(quote.amount)}{sandbox}"
                if original:
                    price = (
                        f"the same image, provider and options as job #{original.pk}: its "
                        f"result is reused, not charged ({money.price(quote.amount)} saved)"
                    )
                    reused[job] = original
                lifecycle.note(
                    job.pk,
                    Job.State.QUEUED,
                    f"Accepted {stored.info.width}x{stored.info.height} "
                    f"{stored.info.format}; expected result {width}x{height}, {price}.",
                )
                created.append(job)
        to_run = [job for job in created if job not in reused]  # reused jobs hold nothing
        try:
            ledger.hold(team, to_run)  # the budget check and the holds: one transaction
        except ledger.OverBudget as refusal:
            raise SubmissionRefused([refusal.message]) from None
        for job, original in reused.items():
            reuses.finish(job, original)
        # Above the team's approval limit the jobs wait, holding their quotes, for a
        # manager (jobs/approvals.py); otherwise they go to the worker now.
        if not approvals.wait_if_above_limit(team, to_run):
            tasks.enqueue_submit([job.pk for job in to_run])
    for job in reused:
        job.refresh_from_db()
    return created


def parse_sizes(values) -> list[tuple[str, ImageInfo]]:
    """`name|width|height|bytes|kind` entries the upload page measured in the browser.

    kind: the format read from the file's first bytes (JPEG, PNG, WEBP, or another's name)
    with "+alpha" when it has transparency, or "unreadable" for a file the browser could
    not decode (then width and height are 0). Entries without a kind (the older
    `name|width|height|bytes`) are taken as opaque PNGs. An entry may end with the file's
    sha256 (`...|kind|sha256`, hex): the quote then says when it was done before."""
    infos = []
    for value in values[:50]:
        head, _, last = value.rpartition("|")
        sha = last.lower() if head and SHA256.fullmatch(last.lower()) else ""
        value = head if sha else value
        parsed = _sized(value, with_kind=True) or _sized(value, with_kind=False)
        if parsed:
            infos.append((parsed[0], replace(parsed[1], sha256=sha)))
    return infos


SHA256 = re.compile(r"[0-9a-f]{64}")


def _sized(value: str, *, with_kind: bool) -> tuple[str, ImageInfo] | None:
    try:
        if with_kind:
            name, width, height, size, kind = value.rsplit("|", 4)
        else:
            (name, width, height, size), kind = value.rsplit("|", 3), "PNG"
        width, height, size = int(width), int(height), int(size)
    except ValueError:
        return None
    fmt, _, alpha = kind.upper().partition("+")
    if fmt == "UNREADABLE":
        fmt = ""  # imaging.check_measured refuses it as the submit would
    elif not (fmt.isalnum() and len(fmt) <= 10) or width <= 0 or height <= 0:
        return None
    return display_name(name), ImageInfo(fmt, width, height, alpha == "ALPHA", max(size, 0))


def measured_refusal(info: ImageInfo) -> str:
    """What the submit would say of an image the browser measured before the providers
    are asked ("" if nothing): `inspect`'s own checks, on the browser's figures."""
    try:
        imaging.check_measured(info)
    except ImageRefused as refusal:
        return refusal.message
    return ""
