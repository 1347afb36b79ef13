"""Where media files (inputs, results, thumbnails) live, read from the environment.

Nothing set: local disk under MEDIA_ROOT. STORAGE_URL, or the usual django-storages
variable AWS_STORAGE_BUCKET_NAME, moves them to a private S3-compatible bucket through
django-storages, with no change to the code that saves and reads them.

    STORAGE_URL=s3://<bucket>[/<prefix>][?endpoint_url=<url>&region=<name>&addressing_style=<style>]

- bucket: the bucket's name; prefix: an optional folder inside it for every key.
- endpoint_url: an S3-compatible server (MinIO, Ceph, R2...), e.g. http://127.0.0.1:9000.
  Left out: AWS S3 itself.
- region: the bucket's region; presigned links are signed for it, so AWS needs it for a
  bucket outside us-east-1.
- addressing_style: "path" (the bucket in the path) or "virtual" (in the host name).
  Default: path with an endpoint_url (what S3-compatible servers expect), otherwise
  what boto3 picks for AWS.

The django-storages names fill in whatever STORAGE_URL leaves out: AWS_STORAGE_BUCKET_NAME,
AWS_LOCATION (the prefix), AWS_S3_ENDPOINT_URL, AWS_S3_REGION_NAME,
AWS_S3_ADDRESSING_STYLE. Keys come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or
AWS_S3_ACCESS_KEY_ID / AWS_S3_SECRET_ACCESS_KEY, and AWS_SESSION_TOKEN), or, when they
are not set, from boto3's own chain (an instance or task role). Never from STORAGE_URL:
a URL gets printed and logged too easily.

Objects are private: no ACL is ever sent (the bucket's private default applies) and
every link handed out is presigned, valid AWS_QUERYSTRING_EXPIRE seconds (default 600).
"""

import os
import re
from collections.abc import Mapping
from urllib.parse import parse_qs, urlsplit

from django.core.exceptions import ImproperlyConfigured

BACKEND = "storages.backends.s3.S3Storage"
DEFAULT_EXPIRE = 600  # seconds a presigned link for the browser lives
MAX_EXPIRE = 7 * 24 * 3600  # SigV4 cannot presign for longer
STYLES = ("path", "virtual", "auto")
URL_PARAMS = {
    "endpoint_url": "endpoint_url",
    "region": "region_name",
    "addressing_style": "addressing_style",
}
# AWS's rule for bucket names (S3-compatible servers accept these too).
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def s3_options(environ: Mapping[str, str] = os.environ) -> dict | None:
    """The S3Storage OPTIONS the environment asks for, or None for local disk."""
    url = environ.get("STORAGE_URL", "").strip()
    found = {
        "bucket_name": environ.get("AWS_STORAGE_BUCKET_NAME", "").strip(),
        "location": environ.get("AWS_LOCATION", ""),
        "endpoint_url": environ.get("AWS_S3_ENDPOINT_URL", "").strip(),
        "region_name": environ.get("AWS_S3_REGION_NAME", "").strip(),
        "addressing_style": environ.get("AWS_S3_ADDRESSING_STYLE", "").strip(),
    }
    if not url and not found["bucket_name"]:
        return None
    if url:
        found.update({k: v for k, v in parse_storage_url(url).items() if v})
    bucket = found["bucket_name"]
    if not BUCKET_NAME.fullmatch(bucket):
        raise ImproperlyConfigured(
            f"The bucket name {bucket!r} is not valid: 3 to 63 lowercase letters, digits, "
            "dots and hyphens."
        )
    endpoint = found["endpoint_url"]
    if endpoint:
        check_endpoint(endpoint)
    style = found["addressing_style"] or ("path" if endpoint else "")
    if style and style not in STYLES:
        raise ImproperlyConfigured(
            f"addressing_style must be one of {', '.join(STYLES)}, not {style!r}"
        )
    return {
        "bucket_name": bucket,
        "location": found["location"].strip("/"),
        "endpoint_url": endpoint or None,
        "region_name": found["region_name"] or None,
        "addressing_style": style or None,
        "signature_version": "s3v4",
        # Private: no ACL header at all, so the bucket's own (private) default applies;
        # "public-read" is never sent. Readers get presigned links instead.
        "default_acl": None,
        "querystring_auth": True,
        "querystring_expire": expire(environ),
        # Our names are random already; never replace an object that exists.
        "file_overwrite": False,
        "access_key": _first(environ, "AWS_S3_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
        "secret_key": _first(environ, "AWS_S3_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
        "security_token": _first(environ, "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"),
    }


def parse_storage_url(url: str) -> dict:
    """STORAGE_URL -> bucket_name, location, endpoint_url, region_name, addressing_style."""
    parts = urlsplit(url)
    if parts.scheme != "s3":
        raise ImproperlyConfigured(
            f"STORAGE_URL must start with s3://, like s3://bucket?endpoint_url=...; got "
            f"{parts.scheme or 'no'} scheme"
        )
    if "@" in parts.netloc:
        raise ImproperlyConfigured(
            "STORAGE_URL must not hold keys: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    if parts.fragment:
        raise ImproperlyConfigured("STORAGE_URL has a #fragment; nothing goes there")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - set(URL_PARAMS))
    if unknown:
        raise ImproperlyConfigured(
            f"STORAGE_URL has unknown parameters {', '.join(unknown)}; it takes "
            f"{', '.join(URL_PARAMS)}"
        )
    found = {"bucket_name": parts.netloc, "location": parts.path.strip("/")}
    for name, values in query.items():
        if len(values) != 1:
            raise ImproperlyConfigured(f"STORAGE_URL gives {name} more than once")
        found[URL_PARAMS[name]] = values[0].strip()
    return found


def check_endpoint(endpoint: str) -> None:
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ImproperlyConfigured(
            f"The storage endpoint must be an http(s) URL like http://127.0.0.1:9000, not "
            f"{endpoint!r}"
        )
    if "@" in parts.netloc or parts.query or parts.fragment:
        raise ImproperlyConfigured(
            "The storage endpoint must be scheme://host[:port] only (keys go in "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        )
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ImproperlyConfigured(
            f"The storage endpoint's port is not valid: {endpoint!r}"
        ) from None


def expire(environ: Mapping[str, str]) -> int:
    raw = environ.get("AWS_QUERYSTRING_EXPIRE", "").strip()
    try:
        seconds = int(raw) if raw else DEFAULT_EXPIRE
    except ValueError:
        raise ImproperlyConfigured(
            f"AWS_QUERYSTRING_EXPIRE must be a whole number of seconds, not {raw!r}"
        ) from None
    if not 1 <= seconds <= MAX_EXPIRE:
        raise ImproperlyConfigured(
            f"AWS_QUERYSTRING_EXPIRE must be from 1 to {MAX_EXPIRE} seconds, not {seconds}"
        )
    return seconds


def _first(environ: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        if environ.get(name):
            return environ[name]
    return None


# --- where presigned links point ---------------------------------------------------------
def origins(options: Mapping) -> list[str]:
    """The origins ("scheme://host[:port]") presigned links to this bucket can have: the
    browser loads images from them (the CSP's img-src) and the sandboxes fetch inputs
    from them. Exactly the configured endpoint, or the bucket's own AWS host names."""
    bucket = options["bucket_name"]
    endpoint = options.get("endpoint_url")
    style = options.get("addressing_style") or "auto"
    if endpoint:
        parts = urlsplit(endpoint)
        host = parts.hostname
        default_port = {"http": 80, "https": 443}[parts.scheme]
        port = f":{parts.port}" if parts.port not in (None, default_port) else ""
        found = [f"{parts.scheme}://{host}{port}"]
        # boto3 puts the bucket in the host name only when asked, and even then falls back
        # to the path for some names (a dotted name over https: no certificate covers it;
        # a plain name before an IP address): both stay allowed.
        if style == "virtual" and not ("." in bucket and parts.scheme == "https"):
            found.append(f"{parts.scheme}://{bucket}.{host}{port}")
        return found
    region = options.get("region_name")
    hosts = ["s3.amazonaws.com"] + ([f"s3.{region}.amazonaws.com"] if region else [])
    found = []
    if style != "path":
        found += [f"https://{bucket}.{host}" for host in hosts]
    if style == "path" or "." in bucket:  # dotted names go path style over https
        found += [f"https://{host}" for host in hosts]
    return found
