"""The one scrubber: everything a provider says is untrusted text, and no secret of ours
may travel with it into the database, a log or a page.

`scrub()` removes every configured provider key, the sandbox key and SECRET_KEY (and their
URL-encoded forms), plus the per-job tokens that appear in our own callback and input
URLs. It is applied where texts are written (job errors, timeline notes, webhook hints)
and to every log line, so an adapter cannot forget it."""

import logging
import re
from functools import lru_cache
from urllib.parse import quote, quote_plus

from django.conf import settings

MASK = "[redacted]"
MIN_SECRET = 8  # shorter values would mask ordinary words
# Our own URLs carry secrets in their paths: /hooks/<provider>/<job>/<token>/ and
# /inputs/<signed token>/.
TOKEN_PATHS = re.compile(r"(/hooks/[\w-]+/\d+/|/inputs/)[^/\s\"'<>]+")


def _secrets() -> tuple[str, ...]:
    values = {settings.SECRET_KEY, getattr(settings, "SANDBOX_API_KEY", "")}
    for config in getattr(settings, "PROVIDER_SETTINGS", {}).values():
        values.add(config.get("api_key") or "")
    return tuple(sorted((v for v in values if len(v) >= MIN_SECRET), key=len, reverse=True))


@lru_cache(maxsize=8)
def _pattern(values: tuple[str, ...]):
    forms = set()
    for value in values:
        forms.update({value, quote(value, safe=""), quote_plus(value)})
    if not forms:
        return None
    return re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)))


def scrub(text) -> str:
    """`text` with every secret of ours replaced by a mask."""
    if text is None:
        return ""
    text = str(text)
    pattern = _pattern(_secrets())
    if pattern is not None:
        text = pattern.sub(MASK, text)
    return TOKEN_PATHS.sub(lambda m: m.group(1) + MASK, text)


class ScrubFilter(logging.Filter):
    """Scrubs each log record's final text (message, arguments and traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is logged as it is  # noqa: BLE001
            return True
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = scrub(message), None
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True
