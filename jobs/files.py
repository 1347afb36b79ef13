"""Media files wherever they live (upscaler_site/storage.py chooses).

Saving and reading always go through `default_storage` and FieldFile, never a local path.
What differs is how a file leaves us: on local disk the team-scoped views stream it and
providers fetch our signed /inputs/ link; in the bucket, browsers and providers get a
short-lived presigned link straight from the bucket, and no file passes through a web
process."""

import sys

from django.core.files.storage import default_storage
from django.http import HttpResponseRedirect
from django.utils.http import content_disposition_header

from upscaler_site.storage import origins


def in_bucket() -> bool:
    """Whether media live in an S3-compatible bucket (the default storage, as configured
    now: tests swap it)."""
    kind = default_storage.__class__  # makes the configured storage, importing its module
    # Looked up, not imported: on local disk boto3 (half a second to import) never loads.
    s3 = sys.modules.get("storages.backends.s3")
    return s3 is not None and issubclass(kind, s3.S3Storage)


def presigned_url(
    name: str, *, expire: int | None = None, content_type: str = "", download_as: str = ""
) -> str:
    """A presigned GET of `name` in the bucket, valid `expire` seconds (default: the
    storage's AWS_QUERYSTRING_EXPIRE). The bucket answers with `content_type`, and, with
    `download_as`, as an attachment of that name."""
    params = {}
    if content_type:
        params["ResponseContentType"] = content_type
    if download_as:
        # RFC 6266 quoting (filename*= for names that are not plain ASCII): the name is
        # the user's, and S3 echoes this value into its response header.
        params["ResponseContentDisposition"] = content_disposition_header(True, download_as)
    return default_storage.url(name, parameters=params, expire=expire)


def redirect(name: str, **kwargs) -> HttpResponseRedirect:
    """A redirect to a presigned link. Only after the caller's team check."""
    response = HttpResponseRedirect(presigned_url(name, **kwargs))
    # Half the link's life: a redirect the browser kept always leads to a link that still
    # works (a new link each time would defeat the browser's image cache altogether).
    expire = kwargs.get("expire") or default_storage.querystring_expire
    response["Cache-Control"] = f"private, max-age={expire // 2}"
    return response


def bucket_origins() -> list[str]:
    """The origins presigned links to the bucket can have ([] on local disk)."""
    if not in_bucket():
        return []
    storage = default_storage
    return origins(
        {
            "bucket_name": storage.bucket_name,
            "endpoint_url": storage.endpoint_url,
            "region_name": storage.region_name,
            "addressing_style": storage.addressing_style,
        }
    )
