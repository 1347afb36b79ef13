"""The one scrubber: everything a provider says is untrusted text, and no secret of ours
may travel with it into the database, a log or a page.

`scrub()` removes every configured provider key, the sandbox key, SECRET_KEY and the media
bucket's secret key (and their URL-encoded forms), plus the per-job tokens that appear in
our own callback and input URLs. It is applied where provider text becomes ours, so an
adapter cannot forget it:
- the database: `jobs.lifecycle` (the only writer of a job's texts: timeline, error,
  result link, task id) and the webhook view (`WebhookDelivery.hint`);
- django-q's stored result of a failed task (its exception text), via `scrub_task_result`;
- the logs: every record, at creation (`install_log_scrubbing`), whichever handler
  writes it;
- pages show only what was stored."""

import logging
import re
from functools import lru_cache
from urllib.parse import quote, quote_plus

from django.conf import settings

MASK = "[redacted]"
MIN_SECRET = 8  # shorter values would mask ordinary words
# Our own URLs carry secrets in their paths: /hooks/<provider>/<job>/<token>/,
# /inputs/<signed token>/ where the token has Django's signed shape (payload:time:sig),
# so a provider's own link that merely has an "inputs" folder is left alone, and an
# invitation's /accounts/set-password/<user>/<password token>/.
TOKEN_PATHS = re.compile(
    r"(/hooks/[\w-]+/\d+/)[^/\s\"'<>]+|(/inputs/)[\w.-]+:[\w-]+:[\w-]+"
    r"|(/accounts/set-password/[\w-]+/)[\w-]+"
)


def _secrets() -> tuple[str, ...]:
    values = {settings.SECRET_KEY, getattr(settings, "SANDBOX_API_KEY", "")}
    values.add(getattr(settings, "EMAIL_HOST_PASSWORD", ""))
    for config in getattr(settings, "PROVIDER_SETTINGS", {}).values():
        key = config.get("api_key") or ""
        values.add(key)
        # fal's key is "<key id>:<key secret>": the secret half is a secret on its own.
        values.update(key.split(":"))
    # The media bucket's secret key and session token, when media live in S3.
    bucket = getattr(settings, "STORAGES", {}).get("default", {}).get("OPTIONS") or {}
    values.update({bucket.get("secret_key") or "", bucket.get("security_token") or ""})
    return tuple(sorted((v for v in values if len(v) >= MIN_SECRET), key=len, reverse=True))


# Keyed on the secrets themselves, so tests (or a reload) that change the settings get a
# fresh pattern; compiling one per call would cost more than the scrubbing.
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
    return TOKEN_PATHS.sub(lambda m: (m.group(1) or m.group(2) or m.group(3)) + MASK, text)


# --- logs ---------------------------------------------------------------------------------
def scrub_record(record: logging.LogRecord) -> None:
    """Scrub a record's final text (message with its arguments, traceback, stack) in
    place. A record with nothing to hide is left exactly as it was."""
    try:
        message = record.getMessage()
    except Exception:  # a malformed record is logged as it is  # noqa: BLE001
        return
    clean = scrub(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and not record.exc_text:
        # Cached here, so every formatter prints this scrubbed text, not its own.
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = scrub(record.exc_text)
    if record.stack_info:
        record.stack_info = scrub(record.stack_info)


class ScrubFilter(logging.Filter):
    """For handlers in settings.LOGGING. Records are already scrubbed when they are made
    (see `install_log_scrubbing`); this covers any made before the app was ready."""

    def filter(self, record: logging.LogRecord) -> bool:
        scrub_record(record)
        return True


def install_log_scrubbing() -> None:
    """Scrub every log record when it is created. A filter only guards the handler it is
    attached to, and Django's own handlers on the "django" logger (console in DEBUG,
    mail_admins), non-propagating loggers such as "django.server" (written by logging's
    last-resort handler), pytest's caplog and any handler a library adds never pass
    through ours."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "scrubs", False):
        return

    def factory(*args, **kwargs):
        record = previous(*args, **kwargs)
        scrub_record(record)
        return record

    factory.scrubs = True
    logging.setLogRecordFactory(factory)


# --- django-q -----------------------------------------------------------------------------
def scrub_task_result(sender, task, **kwargs) -> None:
    """django-q stores a failed task's exception and traceback (admin: Failed tasks) and
    logs it: scrubbed in the worker, before either happens."""
    if isinstance(task.get("result"), str):
        task["result"] = scrub(task["result"])
