"""Idempotency-Key on creates, with Stripe's semantics.

    from jobs.api.idempotency import idempotent

    @router.post("/jobs", response={201: JobsOut, 413: ProblemOut, 415: ProblemOut})
    @idempotent  # below the route decorator, directly above the function
    def create_jobs(request, ...):
        ...
        return Status(201, {"jobs": [...]})  # or raise Problem(422, ...)

A request without the header runs as usual. With `Idempotency-Key: <1-255 characters>`:

- same user, same key, same request (method, path and body; for multipart the fields and
  the file bytes) within KEEP (24 h): the first answer's status and body are replayed,
  with the header `Idempotent-Replayed: true`; the endpoint does not run again.
- the same key with a different request: 422 problem, "This Idempotency-Key was used with
  a different request".
- the same key while the first request is still being worked on: 409 problem.
- answers below 500 are stored (a refusal is replayed like a success, as Stripe does); a
  5xx or an exception forgets the key, so the client may retry with it.

The unique (user, key) row is the claim: inserted first, in its own transaction, before
the work; the answer is written into it after. `purge()` (the daily house task) deletes
rows older than KEEP. The decorator also documents the header and the 409/422 answers in
the OpenAPI schema. Validation errors ninja raises before the function runs (a missing
required field) are not stored: they did nothing, and the same request gets them again.
"""

import datetime
import functools
import hashlib
import json

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFilesSent
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.http import HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.utils import timezone
from ninja.decorators import decorate_view
from ninja.utils import contribute_operation_callback

from jobs.api import problems
from jobs.models import IdempotentRequest

HEADER = "Idempotency-Key"
KEEP = datetime.timedelta(hours=24)
_CLAIM = "_idempotency_claim"  # request attribute: the row this request owns


def idempotent(func=None, *, recover=None):
    """Make a create endpoint honour Idempotency-Key (see the module docstring).

    `recover(jobs) -> (status, body)`: the answer the endpoint gave for the jobs it made,
    for a call killed after its jobs were committed but before its answer was stored
    (the jobs carry the claim: `claim_of(request)`, stored in their transaction)."""
    if func is None:
        return functools.partial(idempotent, recover=recover)

    @functools.wraps(func)
    def view(request, *args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            return func(request, *args, **kwargs)
        if not 0 < len(key) <= 255 or not key.isprintable():
            return problems.response(422, f"{HEADER} must be 1 to 255 printable characters.")
        try:
            digest = request_digest(request)
        except (RequestDataTooBig, TooManyFilesSent, MultiPartParserError):
            return func(request, *args, **kwargs)  # the endpoint says what is wrong with it
        outcome = claim(request.user, key, digest, recover)
        if isinstance(outcome, HttpResponse):
            return outcome  # a replay, or a conflict: the endpoint does not run
        setattr(request, _CLAIM, outcome)
        return func(request, *args, **kwargs)

    # functools.wraps copied func's list of callbacks: give the view its own.
    view._ninja_contribute_to_operation = list(getattr(func, "_ninja_contribute_to_operation", []))
    contribute_operation_callback(view, _document)
    return decorate_view(_store)(view)  # around ninja's run, also on a mounted clone


def claim_of(request) -> IdempotentRequest | None:
    """This request's claim, for the jobs it makes to carry (see `recover`)."""
    return getattr(request, _CLAIM, None)


def claim(user, key: str, digest: str, recover=None) -> IdempotentRequest | HttpResponse:
    """The new in-progress row for (user, key), or the answer to give instead of working:
    the stored answer (a replay), 422 (another request's key) or 409 (still working).

    A claim still in progress after STALE was left by a process that died (no request
    lives that long: the web server kills it first). If its jobs were committed, they
    carry the claim: the answer is rebuilt from them and stored. If not, nothing of it
    happened, and the claim is taken over."""
    for _ in range(2):
        try:
            with transaction.atomic():
                return IdempotentRequest.objects.create(user=user, key=key, request_digest=digest)
        except IntegrityError:
            pass
        first = IdempotentRequest.objects.filter(user=user, key=key).first()
        if first is None:
            continue  # forgotten in between (its request failed): claim it again
        if first.created_at < timezone.now() - KEEP:
            # Past 24 h the key is free again, even if the daily purge has not run yet.
            IdempotentRequest.objects.filter(pk=first.pk, created_at=first.created_at).delete()
            continue
        if first.request_digest != digest:
            return problems.response(
                422, f"This {HEADER} was used with a different request. Use a new key."
            )
        if first.status is None and first.created_at < timezone.now() - stale():
            recovered = _recover(first, recover)
            if recovered is None:
                continue  # nothing was made: claim it again
            return recovered
        if first.status is None:
            return problems.response(
                409,
                f"A request with this {HEADER} is still being worked on. Ask again in a "
                "moment to get its answer.",
                headers={"Retry-After": "1"},
            )
        return replay(first)
    return problems.response(409, f"This {HEADER} is busy. Try again in a moment.")


def stale() -> datetime.timedelta:
    return datetime.timedelta(seconds=settings.IDEMPOTENCY_STALE_SECONDS)


def _recover(row: IdempotentRequest, recover) -> HttpResponse | None:
    """The answer of a claim whose process died: rebuilt from the jobs it committed (and
    stored, so every later call replays it), or None after freeing a claim that made
    nothing."""
    made = list(row.jobs.order_by("pk"))
    if not made or recover is None:
        if not made:
            IdempotentRequest.objects.filter(pk=row.pk, status__isnull=True).delete()
            return None
        return problems.response(409, f"This {HEADER} is busy. Try again in a moment.")
    status, body = recover(made)
    row.status, row.body = status, json.dumps(body, cls=DjangoJSONEncoder)
    IdempotentRequest.objects.filter(pk=row.pk, status__isnull=True).update(
        status=row.status, body=row.body
    )
    return replay(IdempotentRequest.objects.get(pk=row.pk))


def replay(row: IdempotentRequest) -> HttpResponse:
    kind = "application/problem+json" if row.status >= 400 else "application/json"
    answer = HttpResponse(row.body, status=row.status, content_type=kind)
    answer["Idempotent-Replayed"] = "true"
    return answer


def request_digest(request) -> str:
    """sha256 of the method, the path (with its query) and the body. A multipart body is
    digested from its fields and files (their names, file names and bytes): the raw body
    has a random boundary, and Django has already read it."""
    h = hashlib.sha256()
    h.update(f"{request.method} {request.get_full_path()}\n".encode())
    if request.content_type == "multipart/form-data":
        for name in sorted(request.POST):
            for value in request.POST.getlist(name):
                h.update(json.dumps(["field", name, value]).encode())
        for name in sorted(request.FILES):
            for upload in request.FILES.getlist(name):
                h.update(json.dumps(["file", name, upload.name]).encode())
                upload.seek(0)
                for chunk in upload.chunks():
                    h.update(chunk)
                upload.seek(0)
    else:
        h.update(request.body)
    return h.hexdigest()


def _store(run):
    """Around ninja's whole operation (auth, the function, rendering, error handlers):
    write the final answer into this request's claim, or forget the claim."""

    @functools.wraps(run)
    def operation(request, *args, **kwargs):
        try:
            answer = run(request, *args, **kwargs)
        except BaseException:
            _forget(request)
            raise
        row = getattr(request, _CLAIM, None)
        if row is not None:
            if answer.status_code >= 500 or getattr(answer, "streaming", False):
                _forget(request)
            else:
                row.status, row.body = answer.status_code, answer.content.decode()
                row.save(update_fields=["status", "body"])
                delattr(request, _CLAIM)
        return answer

    return operation


def _forget(request) -> None:
    row = getattr(request, _CLAIM, None)
    if row is not None:
        IdempotentRequest.objects.filter(pk=row.pk).delete()
        delattr(request, _CLAIM)


def _document(operation) -> None:
    for status in (409, 422):
        if status not in operation.response_models:
            operation.response_models[status] = operation._create_response_model(
                problems.ProblemOut
            )
    extra = operation.openapi_extra = dict(operation.openapi_extra or {})
    extra["parameters"] = list(extra.get("parameters", [])) + [
        {
            "in": "header",
            "name": HEADER,
            "required": False,
            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
            "description": "Any unique string (a UUID): the same request sent again with "
            "the same key within 24 h gets the first answer instead of running twice.",
        }
    ]


def purge(now: datetime.datetime | None = None) -> int:
    """Forget the keys older than KEEP; the number of rows deleted."""
    cut = (now or timezone.now()) - KEEP
    deleted, _ = IdempotentRequest.objects.filter(created_at__lt=cut).delete()
    return deleted
