"""Turning uploads into jobs. The upload page, "run again" and `manage.py upscale` all
come through here, so they validate the same way.

Everything is checked before anything is stored: one bad file or one option a provider
cannot take refuses the whole submission with a message per problem. The cheap checks
come first: files are judged by their headers (size, format, pixels, every provider
limit) before any pixel is decoded, so a decompression bomb costs nothing to refuse.
"""

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
from jobs import imaging, lifecycle, retention, tasks
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


def store(upload: Upload) -> StoredInput:
    key = uuid.uuid4().hex
    month = timezone.now().strftime("%Y/%m")
    upload.file.seek(0)
    file_name = default_storage.save(
        f"inputs/{month}/{key}.{upload.info.extension}", File(upload.file)
    )
    thumb_name = default_storage.save(f"thumbs/{month}/{key}-in.webp", ContentFile(upload.thumb))
    return StoredInput(upload.name, file_name, thumb_name, upload.info)


def submit_uploads(*, user, team, files, choices, email_when_done=False) -> list[Job]:
    selections = select(choices)
    uploads = inspect(files)
    check([(u.name, u.info) for u in uploads], selections)
    check_budget(team, [u.info for u in uploads], selections)
    uploads = decode(uploads)
    stored = [store(u) for u in uploads]
    try:
        return create_jobs(
            user=user,
            team=team,
            inputs=stored,
            selections=selections,
            email_when_done=email_when_done,
        )
    except SubmissionRefused:
        for s in stored:  # a concurrent submission took the budget first
            default_storage.delete(s.file_name)
            default_storage.delete(s.thumb_name)
        raise


def check_budget(team, infos, selections) -> None:
    """Refuse an over-budget submission before anything is stored."""
    wanted = sum(
        (
            quote_for(sel, info)[0].amount
            for info in infos
            for sel in selections
            if not sel.provider.is_sandbox
        ),
        Decimal(0),
    )
    try:
        ledger.check(team, wanted)
    except ledger.OverBudget as refusal:
        raise SubmissionRefused([refusal.message]) from None


def quote_for(sel: Selection, info: ImageInfo):
    width, height = sel.provider.output_size(info, sel.options)
    return books.quote(sel.provider.slug, sel.provider.name, width, height, sel.options)


def rerun(job: Job, *, user, choices) -> list[Job]:
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
    stored = StoredInput(job.input_name, job.input_file.name, job.input_thumb.name, info)
    return create_jobs(
        user=user, team=job.team, inputs=[stored], selections=selections, source_job=job
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
    *, user, team, inputs, selections, source_job=None, email_when_done=False
) -> list[Job]:
    """`email_when_done`: the submitter wants an e-mail when a long batch ends
    (jobs/notices.py)."""
    batch = uuid.uuid4()
    created = []
    with transaction.atomic():
        for stored in inputs:
            for n, sel in enumerate(selections):
                # "Keep transparency" becomes the format this image needs: the job
                # stores (and sends) the value the provider's contract takes.
                sel = replace(sel, options=sel.provider.resolve_options(sel.options, stored.info))
                width, height = sel.provider.output_size(stored.info, sel.options)
                quote, book = quote_for(sel, stored.info)
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
                    # The job that stored the file counts its bytes; the others of its
                    # batch, and reruns, share it (jobs/retention.py).
                    input_owner=n == 0 and source_job is None,
                    predicted_width=width,
                    predicted_height=height,
                    quoted_amount=quote.amount,
                    quote_explanation=quote.explanation[:300],
                    price_book=book,
                    email_when_done=email_when_done,
                )
                sandbox = " (sandbox - not billed)" if job.sandbox else ""
                lifecycle.note(
                    job.pk,
                    Job.State.QUEUED,
                    f"Accepted {stored.info.width}x{stored.info.height} "
                    f"{stored.info.format}; expected result {width}x{height}, "
                    f"quoted {money.price(quote.amount)}{sandbox}.",
                )
                created.append(job)
        try:
            ledger.hold(team, created)  # the budget check and the holds: one transaction
        except ledger.OverBudget as refusal:
            raise SubmissionRefused([refusal.message]) from None
        tasks.enqueue_submit([job.pk for job in created])
    return created


def parse_sizes(values) -> list[tuple[str, ImageInfo]]:
    """`name|width|height|bytes|kind` entries the upload page measured in the browser.

    kind: the format read from the file's first bytes (JPEG, PNG, WEBP, or another's name)
    with "+alpha" when it has transparency, or "unreadable" for a file the browser could
    not decode (then width and height are 0). Entries without a kind (the older
    `name|width|height|bytes`) are taken as opaque PNGs."""
    infos = []
    for value in values[:50]:
        parsed = _sized(value, with_kind=True) or _sized(value, with_kind=False)
        if parsed:
            infos.append(parsed)
    return infos


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
