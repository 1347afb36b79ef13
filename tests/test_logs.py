"""Logs an operator can use: one line per request and per job transition, JSON with
`LOG_FORMAT=json`, and never a key or a token of ours in them."""

import io
import json
import logging
import logging.config
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.core import signing

from jobs import lifecycle
from jobs.inbound import INPUT_SALT
from jobs.models import Job, new_webhook_token
from upscaler_site.logs import logging_config

ROOT = Path(__file__).resolve().parents[1]


def console_handler() -> logging.StreamHandler:
    (handler,) = [h for h in logging.root.handlers if getattr(h, "name", "") == "console"]
    return handler


@pytest.fixture
def json_console():
    """The console handler as settings.LOGGING makes it with LOG_FORMAT=json, writing
    into a buffer: the very text an operator's log collector would read."""
    logging.config.dictConfig(logging_config("json", "INFO"))
    stream = io.StringIO()
    console_handler().setStream(stream)
    yield stream
    logging.config.dictConfig(settings.LOGGING)


def lines(stream: io.StringIO, logger: str | None = None) -> list[dict]:
    found = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [entry for entry in found if logger is None or entry["logger"] == logger]


def test_each_job_transition_logs_one_json_line_with_its_fields(
    make_job, owner, team, json_console
):
    job = make_job(owner, team)  # the local provider, run to the end in-process

    moves = lines(json_console, "jobs.lifecycle")
    assert [(m["from_state"], m["state"]) for m in moves] == [
        ("queued", "submitting"),
        ("submitting", "fetching"),
        ("fetching", "succeeded"),
    ]
    for entry in moves:
        assert entry["level"] == "INFO"
        assert entry["job_id"] == job.pk and entry["team_id"] == team.pk
        assert entry["provider"] == "local"
        assert isinstance(entry["duration_s"], float) and entry["duration_s"] >= 0
        assert entry["time"].endswith("+00:00")
        assert f"job {job.pk}" in entry["message"] and entry["state"] in entry["message"]
        assert "error_code" not in entry


def test_a_failing_job_logs_its_error_code_and_not_its_message(make_job, owner, team, json_console):
    job = make_job(owner, team, run=False)
    assert lifecycle.claim(job.pk)
    assert lifecycle.fail(job.pk, [Job.State.SUBMITTING], "bad_input", "The provider said no.")

    (failed,) = [m for m in lines(json_console, "jobs.lifecycle") if m["state"] == "failed"]
    assert failed["from_state"] == "submitting" and failed["error_code"] == "bad_input"
    assert "said no" not in json.dumps(failed)


def test_a_move_that_changes_nothing_logs_nothing(make_job, owner, team, json_console):
    job = make_job(owner, team, run=False)
    assert not lifecycle.move(job.pk, [Job.State.RUNNING], Job.State.FETCHING)
    assert lines(json_console, "jobs.lifecycle") == []


def test_keys_and_tokens_in_a_log_line_come_out_masked(json_console):
    token = signing.dumps({"j": 7, "p": "fal"}, salt=INPUT_SALT, compress=True)
    hook = new_webhook_token()
    log = logging.getLogger("jobs.somewhere")
    log.warning(
        "key %s fetched %s/inputs/%s/ and called /hooks/fal/7/%s/",
        settings.SECRET_KEY,
        settings.PUBLIC_BASE_URL,
        token,
        hook,
    )
    try:
        raise RuntimeError(f"the provider echoed {settings.SANDBOX_API_KEY}")
    except RuntimeError:
        log.exception("it broke")

    text = json_console.getvalue()
    for secret in (settings.SECRET_KEY, settings.SANDBOX_API_KEY, token, hook):
        assert secret not in text
    warning, error = lines(json_console, "jobs.somewhere")
    assert warning["message"] == (
        f"key [redacted] fetched {settings.PUBLIC_BASE_URL}/inputs/[redacted]/"
        " and called /hooks/fal/7/[redacted]/"
    )
    assert error["level"] == "ERROR" and "RuntimeError" in error["exc"]
    assert "[redacted]" in error["exc"]


# --- gunicorn's access log ------------------------------------------------------------


def access_line(monkeypatch, capsys, log_format: str, path: str, query: str) -> str:
    """What gunicorn's access log writes for one request, through the logger class that
    gunicorn.conf.py names, configured as that file configures it."""
    from gunicorn.config import Config

    from upscaler_site.access_log import GunicornLogger

    monkeypatch.setenv("LOG_FORMAT", log_format)
    cfg = Config()
    cfg.set("accesslog", "-")
    logger = GunicornLogger(cfg)
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": f"{path}?{query}",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_REFERER": f"https://example.com{path}?{query}",
    }
    response = SimpleNamespace(status="404 Not Found", sent=179, headers=[])
    request = SimpleNamespace(headers=[("REFERER", environ["HTTP_REFERER"])])
    capsys.readouterr()
    logger.access(response, request, environ, timedelta(milliseconds=12, microseconds=345))
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 1, out
    return out


@pytest.mark.parametrize("log_format", ["plain", "json"])
def test_the_access_log_masks_our_tokens_and_leaves_out_query_strings(
    log_format, monkeypatch, capsys
):
    token = signing.dumps({"j": 7, "p": "fal"}, salt=INPUT_SALT, compress=True)
    hook = new_webhook_token()
    query = "signature=from-a-provider-123456"
    for path, shown in [
        (f"/inputs/{token}/", "/inputs/[redacted]/"),
        (f"/hooks/fal/7/{hook}/", "/hooks/fal/7/[redacted]/"),
    ]:
        out = access_line(monkeypatch, capsys, log_format, path, query)
        assert token not in out and hook not in out and "signature" not in out
        if log_format == "json":
            entry = json.loads(out)
            assert entry["logger"] == "gunicorn.access" and entry["level"] == "INFO"
            assert entry["method"] == "GET" and entry["path"] == shown
            assert entry["status"] == 404 and entry["duration_ms"] == 12.3
            assert entry["bytes"] == 179
        else:
            assert f"GET {shown} 404 179B 12.3ms" in out


# --- a real process -------------------------------------------------------------------


def test_log_format_json_switches_every_logger_of_a_real_process(tmp_path):
    """Django's loggers, django-q2's and ours write JSON when LOG_FORMAT=json."""
    code = (
        "import django, logging\n"
        "django.setup()\n"
        "from django_q.conf import logger  # django-q2's own, set up at its import\n"
        "logger.warning('hello from %s', 'django-q')\n"
        "for name in ('django.request', 'jobs.tasks'):\n"
        "    logging.getLogger(name).warning('hello from %s', name)\n"
    )
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "upscaler_site.settings",
        "SECRET_KEY": "log-test-" + "k" * 20 + "q" * 30,
        "VAR_DIR": str(tmp_path),
        "LOG_FORMAT": "json",
    }
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    found = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(e["logger"], e["message"]) for e in found] == [
        (name, f"hello from {name}") for name in ("django-q", "django.request", "jobs.tasks")
    ]


def test_an_unknown_log_format_refuses_to_start(tmp_path):
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "upscaler_site.settings",
        "SECRET_KEY": "log-test-" + "k" * 20 + "q" * 30,
        "VAR_DIR": str(tmp_path),
        "LOG_FORMAT": "xml",
    }
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "LOG_FORMAT" in done.stderr
