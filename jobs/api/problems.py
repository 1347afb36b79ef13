"""Errors as application/problem+json (RFC 9457), with the plain messages the pages show."""

import json

from django.http import Http404, HttpResponse
from ninja import Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError

TYPE = "about:blank"  # RFC 9457 3.1.1: the status's own meaning, explained by `detail`
TITLES = {
    400: "Bad request",
    401: "Not signed in",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Too large",
    415: "Unsupported media type",
    422: "Refused",
    429: "Too many requests",
    500: "Server error",
}


class ProblemOut(Schema):
    """What every error answer carries (documented per operation, e.g.
    `response={200: JobOut, 404: ProblemOut}`); the body is application/problem+json."""

    type: str = TYPE
    title: str
    status: int
    detail: str
    errors: list[str] = []


class Problem(Exception):
    """Raise from an endpoint: answered as problem+json. `errors`: one plain sentence per
    thing to fix (the page's list); `headers`: e.g. Retry-After."""

    def __init__(self, status: int, detail: str, *, errors=None, headers=None, **extra):
        super().__init__(detail)
        self.status, self.detail = status, detail
        self.errors, self.headers, self.extra = list(errors or []), dict(headers or {}), extra


def response(status: int, detail: str, *, errors=None, headers=None, **extra) -> HttpResponse:
    body = {"type": TYPE, "title": TITLES.get(status, "Error"), "status": status}
    body["detail"] = detail
    if errors:
        body["errors"] = list(errors)
    body.update(extra)
    answer = HttpResponse(json.dumps(body), status=status, content_type="application/problem+json")
    for name, value in (headers or {}).items():
        answer[name] = value
    return answer


def install(api) -> None:
    produce = api.get_openapi_schema

    def get_openapi_schema(*args, **kwargs):
        return as_problems(produce(*args, **kwargs))

    api.get_openapi_schema = get_openapi_schema

    @api.exception_handler(Problem)
    def _problem(request, exc: Problem):
        return response(exc.status, exc.detail, errors=exc.errors, headers=exc.headers, **exc.extra)

    @api.exception_handler(AuthenticationError)
    def _unauthenticated(request, exc):
        return response(
            401,
            "Send a personal API token: Authorization: Bearer <token> (make one on your "
            "Account page).",
            headers={"WWW-Authenticate": 'Bearer realm="api"'},
        )

    @api.exception_handler(ValidationError)
    def _invalid(request, exc: ValidationError):
        errors = [_said(e) for e in exc.errors]
        return response(422, "The request has values we cannot use.", errors=errors)

    @api.exception_handler(Http404)
    def _not_found(request, exc):
        return response(404, str(exc) or "No such thing, or not yours.")

    @api.exception_handler(HttpError)
    def _http_error(request, exc: HttpError):
        return response(exc.status_code, str(exc))


def _said(error: dict) -> str:
    """A validation error as a sentence: "body.scale: Input should be a valid number"."""
    where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
    return f"{where}: {error.get('msg', 'not valid')}" if where else error.get("msg", "")


def as_problems(schema: dict) -> dict:
    """The OpenAPI document says what is sent: error answers (4xx, 5xx) documented with a
    schema (ProblemOut) are application/problem+json, not ninja's application/json."""
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for status, answer in operation.get("responses", {}).items():
                content = answer.get("content", {})
                if str(status)[:1] in "45" and "application/json" in content:
                    content["application/problem+json"] = content.pop("application/json")
    return schema
