"""gunicorn's logger for the portal (gunicorn.conf.py names it): one line per request, in
the format of every other line (LOG_FORMAT), and never a token of ours.

The access line is built here rather than from gunicorn's `access_log_format`, whose
atoms carry the raw request line with its query string, the Referer and any header:
- the path only, with no query string (a query string may carry anything);
- the path through the one scrubber (jobs.scrub): our signed input links
  (/inputs/<token>/) and webhook URLs (/hooks/<provider>/<job>/<token>/) carry their
  secrets as path segments, and come out as /inputs/[redacted]/ and so on;
- no Referer or User-Agent (a Referer is someone else's URL, with its query string).

Imported by gunicorn's master, which never loads Django: nothing here touches Django's
settings until a worker, which has loaded the portal, logs a request.
"""

from datetime import timedelta

from django.conf import settings
from gunicorn import glogging

from jobs.scrub import ScrubFilter, scrub
from upscaler_site.env import env_str
from upscaler_site.logs import formatter


def access_fields(environ: dict, status, sent, request_time: timedelta) -> dict:
    """The structured fields of one request's line (JSON mode writes them as they are)."""
    try:
        status = int(str(status).split(None, 1)[0])
    except ValueError:
        status = str(status)
    return {
        "method": environ.get("REQUEST_METHOD", "-"),
        # PATH_INFO is already percent-decoded, so an encoded token is matched too.
        "path": scrub(environ.get("PATH_INFO") or "/"),
        "status": status,
        "duration_ms": round(request_time.total_seconds() * 1000, 1),
        "bytes": sent if isinstance(sent, int) else None,
    }


class _ScrubOnceReady(ScrubFilter):
    """The scrubber needs the portal's settings (its keys): a worker has them; the
    master, which logs only gunicorn's own words (boots, exits), does not."""

    def filter(self, record):
        return super().filter(record) if settings.configured else True


class GunicornLogger(glogging.Logger):
    def setup(self, cfg):
        super().setup(cfg)
        # gunicorn's own handlers (error log, access log) take the portal's format and
        # filter. LOG_FORMAT is read from the environment here, not from Django's
        # settings: the master process formats its lines without loading Django.
        fmt = formatter(env_str("LOG_FORMAT", "plain"))
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                if getattr(handler, "_gunicorn", False):
                    handler.setFormatter(fmt)
                    if not any(isinstance(f, ScrubFilter) for f in handler.filters):
                        handler.addFilter(_ScrubOnceReady())

    def access(self, resp, req, environ, request_time):
        # Older gunicorn has no access_log_enabled; there, `accesslog` turns the log on.
        if not getattr(self, "access_log_enabled", self.cfg.accesslog):
            return
        fields = access_fields(environ, resp.status, getattr(resp, "sent", None), request_time)
        self.access_log.info(
            "%s %s %s %sB %.1fms",
            fields["method"],
            fields["path"],
            fields["status"],
            fields["bytes"] if fields["bytes"] is not None else "-",
            fields["duration_ms"],
            extra=fields,
        )
