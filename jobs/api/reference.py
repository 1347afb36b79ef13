"""The API reference, /api/v1/reference/: the OpenAPI document ninja generates from our code,
rendered by our own template (no CDN, no script: the CSP allows neither inline). Open to
anyone, signed in or not; the document is built once per process, so an anonymous visit
costs one template render and no query."""

import functools

from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

METHODS = ("get", "post", "put", "patch", "delete")


@require_GET
def page(request):
    return render(request, "jobs/api_reference.html", reference())


@functools.cache
def reference() -> dict:
    """The schema as plain rows for the template: operations grouped by tag."""
    from jobs.api import api

    schema = api.get_openapi_schema()
    components = schema.get("components", {}).get("schemas", {})
    groups: dict[str, list] = {}
    for path, item in schema.get("paths", {}).items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            tag = (op.get("tags") or ["Other"])[0]
            groups.setdefault(tag, []).append(_operation(method, path, op, components))
    return {
        "title": schema["info"]["title"],
        "version": schema["info"]["version"],
        "description": schema["info"].get("description", ""),
        "groups": [{"tag": tag, "operations": ops} for tag, ops in groups.items()],
    }


def _operation(method: str, path: str, op: dict, components: dict) -> dict:
    body = None
    for kind, content in op.get("requestBody", {}).get("content", {}).items():
        body = {"kind": kind, "fields": _fields(content.get("schema", {}), components)}
        break
    return {
        "id": op.get("operationId", f"{method}-{path}"),
        "method": method.upper(),
        "path": path,
        "summary": op.get("summary", ""),
        "description": op.get("description", ""),
        "signed_in": bool(op.get("security")),
        "parameters": [
            {
                "name": p["name"],
                "where": p["in"],
                "required": p.get("required", False),
                "type": _type(p.get("schema", {}), components),
                "description": p.get("description") or p.get("schema", {}).get("description", ""),
            }
            for p in op.get("parameters", [])
        ],
        "body": body,
        "responses": [
            {
                "status": str(status),
                "description": answer.get("description", ""),
                "type": ", ".join(
                    _type(c.get("schema", {}), components)
                    for c in answer.get("content", {}).values()
                ),
                "fields": [
                    field
                    for c in answer.get("content", {}).values()
                    for field in _fields(c.get("schema", {}), components)
                ]
                if str(status).startswith("2")
                else [],
            }
            for status, answer in sorted(op.get("responses", {}).items(), key=lambda i: str(i[0]))
        ],
    }


def _resolve(schema: dict, components: dict) -> dict:
    ref = schema.get("$ref", "")
    return components.get(ref.rsplit("/", 1)[-1], {}) if ref else schema


def _fields(schema: dict, components: dict) -> list[dict]:
    """The top-level fields of an object schema: name, type, required, description."""
    schema = _resolve(schema, components)
    if schema.get("type") == "array":
        schema = _resolve(schema.get("items", {}), components)
    required = set(schema.get("required", []))
    return [
        {
            "name": name,
            "type": _type(prop, components),
            "required": name in required,
            "description": prop.get("description", ""),
        }
        for name, prop in schema.get("properties", {}).items()
    ]


def _type(schema: dict, components: dict) -> str:
    """A short, readable type: "string", "list of JobOut", "integer or null"."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    for either in ("anyOf", "oneOf"):
        if either in schema:
            return " or ".join(_type(s, components) for s in schema[either])
    if "enum" in schema:
        return "one of " + ", ".join(str(v) for v in schema["enum"])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list of {_type(schema.get('items', {}), components)}"
    if schema.get("format") in ("binary", "date-time", "date", "uuid", "uri"):
        return {"binary": "file"}.get(schema["format"], f"{kind} ({schema['format']})")
    return kind


@csrf_exempt  # an API client's POST to a wrong address gets the 404, not a CSRF page
def not_found(request, rest=""):
    """Any other address under /api/: a problem+json 404 (an API client reads JSON), such as
    /api/v1/nonesuch, which no route matches, rather than the site's HTML page."""
    from jobs.api import problems

    return problems.response(
        404, f"No such API address: {request.path}. The reference: /api/v1/reference/"
    )
