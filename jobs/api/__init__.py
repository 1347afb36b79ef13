"""The JSON API, /api/v1/ (django-ninja): the same checks as the pages, through the same
functions (jobs.intake, jobs.quotes, jobs.history, billing.spend); errors as
application/problem+json (RFC 9457). The OpenAPI document is generated from this code."""

from ninja import NinjaAPI

from jobs.api import problems
from jobs.api.auth import TokenAuth

api = NinjaAPI(
    title="Upscaler Portal API",
    version="1",
    description="Upscale images with commercial providers, within your team's budget.",
    auth=TokenAuth(),
    urls_namespace="api-v1",
    openapi_url="/openapi.json",
    docs_url=None,  # the readable reference is our own page (jobs/api/reference.py)
)
problems.install(api)


def _routers():
    # One module per area; each defines `router`. Imported here, once, in this order.
    from jobs.api import approvals, catalog, jobs, spend, tokens_api  # noqa: F401

    for module in (catalog, jobs, spend, approvals, tokens_api):
        router = getattr(module, "router", None)
        if router is not None:
            api.add_router("/", router)


_routers()
