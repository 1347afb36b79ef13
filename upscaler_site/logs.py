"""Log lines for operators: plain text by default, one JSON object per line with
`LOG_FORMAT=json` (for a log collector), the same for every logger: Django's, django-q2's,
ours and gunicorn's (upscaler_site.access_log).

A JSON line has `time` (UTC, ISO 8601), `level`, `logger` and `message`, plus the
structured fields a record carries (FIELDS): a job's transition (jobs.lifecycle) and a
request (gunicorn's access log). Secrets never reach a line: every record is scrubbed
when it is made (jobs.scrub.install_log_scrubbing) and again by the handler's filter, and
the structured fields are built from scrubbed values.

Standard library only, and nothing from Django at import time: gunicorn's master process
formats its own lines with these classes before (and without) loading Django.
"""

import json
import logging
from datetime import UTC, datetime

from django.core.exceptions import ImproperlyConfigured

FORMATS = ("plain", "json")
PLAIN = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The structured fields a JSON line may carry, when a record has them (as `extra`).
FIELDS = (
    # a job's transition
    "job_id",
    "team_id",
    "provider",
    "from_state",
    "state",
    "duration_s",
    "error_code",
    # a request
    "method",
    "path",
    "status",
    "duration_ms",
    "bytes",
)


def log_format(value: str) -> str:
    value = (value or "plain").strip().lower()
    if value not in FORMATS:
        raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, not {value!r}")
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per line; a traceback goes in `exc`, not over several lines."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        # Django's request and server loggers say the status as `status_code`.
        status = getattr(record, "status_code", None)
        if "status" not in entry and isinstance(status, int):
            entry["status"] = status
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if log_format(fmt) == "json" else logging.Formatter(PLAIN)


def logging_config(fmt: str, level: str) -> dict:
    """settings.LOGGING: one console handler on stderr, every line through the scrubber."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"scrub": {"()": "jobs.scrub.ScrubFilter"}},
        "formatters": {
            "plain": {"format": PLAIN},
            "json": {"()": "upscaler_site.logs.JsonFormatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": log_format(fmt),
                "filters": ["scrub"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # Django's own handlers on "django" (a plain console in DEBUG, mail_admins)
            # are dropped: its lines reach the root handler, in the one format.
            "django": {"handlers": []},
            # httpx logs full request URLs at INFO; keep them out of the logs.
            "httpx": {"level": "WARNING"},
            "django.server": {"level": "WARNING"},
        },
    }
