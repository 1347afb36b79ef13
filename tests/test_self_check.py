"""The start-up self-check (issue #11, item 1): when PUBLIC_BASE_URL does not lead to
this portal, sandbox jobs and webhooks fail; the portal says so at start-up, in one
warning line, and on /providers/, with when it checked."""

import logging
import socket

import pytest
from django.core.management import CommandError, call_command

from jobs import self_check
from jobs.models import Heartbeat


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sandboxes_on(settings):
    # Every provider without a key, so each runs against its sandbox under our address.
    settings.PROVIDER_SETTINGS = {
        slug: {"api_key": "", "base_url": ""} for slug in settings.PROVIDER_SETTINGS
    }


def test_a_portal_that_answers_at_its_address_gets_no_warning(
    live_server, settings, sandboxes_on, caplog, owner_client
):
    settings.PUBLIC_BASE_URL = live_server.url
    with caplog.at_level(logging.WARNING, logger="jobs.self_check"):
        result = self_check.run()
    assert result["ok"] and result["failing"] == []
    assert not [r for r in caplog.records if r.name == "jobs.self_check"]
    assert Heartbeat.objects.get(name="self-check").detail["ok"] is True
    assert 'id="unreachable"' not in owner_client.get("/providers/").content.decode()


def test_a_wrong_port_is_logged_once_and_shown_on_the_providers_page(
    live_server, settings, sandboxes_on, caplog, owner_client
):
    wrong = f"http://127.0.0.1:{free_port()}"
    settings.PUBLIC_BASE_URL = wrong
    with caplog.at_level(logging.WARNING, logger="jobs.self_check"):
        result = self_check.run()
    assert not result["ok"]
    lines = [r.getMessage() for r in caplog.records if r.name == "jobs.self_check"]
    assert lines == [
        f"PUBLIC_BASE_URL {wrong} does not answer: sandbox jobs and webhooks will fail. "
        "Set PUBLIC_BASE_URL to where this portal listens."
    ]
    html = owner_client.get("/providers/").content.decode()
    banner = html.split('id="unreachable"')[1].split("</div>\n</div>")[0]
    assert "Sandbox jobs and webhooks will fail" in banner
    assert f"PUBLIC_BASE_URL ({wrong}/healthz/live)" in banner
    assert "Checked when the portal started" in banner and "<time datetime=" in banner


def test_a_sandbox_on_its_own_address_is_checked_too(live_server, settings, sandboxes_on, caplog):
    settings.PUBLIC_BASE_URL = live_server.url
    gone = f"http://127.0.0.1:{free_port()}/sandbox/ximilar"
    settings.PROVIDER_SETTINGS = {
        **settings.PROVIDER_SETTINGS,
        "ximilar": {"api_key": "", "base_url": gone},
    }
    with caplog.at_level(logging.WARNING, logger="jobs.self_check"):
        result = self_check.run()
    assert result["failing"] == [{"what": "Ximilar sandbox", "url": f"{gone}/"}]
    assert [r.getMessage() for r in caplog.records if r.name == "jobs.self_check"] == [
        f"Ximilar sandbox address {gone}/ does not answer: its jobs will fail."
    ]


def test_no_secret_reaches_the_log_line(settings, sandboxes_on, caplog, db):
    port = free_port()
    settings.PUBLIC_BASE_URL = f"http://admin:hunter2@127.0.0.1:{port}/portal"
    with caplog.at_level(logging.WARNING, logger="jobs.self_check"):
        self_check.run()
    text = " ".join(r.getMessage() for r in caplog.records)
    assert f"http://127.0.0.1:{port}/portal does not answer" in text
    assert "hunter2" not in text and "admin" not in text
    assert "hunter2" not in str(Heartbeat.objects.get(name="self-check").detail)


@pytest.mark.parametrize(
    ("addrport", "url"),
    [
        ("127.0.0.1:8100", "http://127.0.0.1:8100"),
        ("8100", "http://127.0.0.1:8100"),
        ("0.0.0.0:8000", "http://127.0.0.1:8000"),
    ],
)
def test_the_serve_command_checks_where_it_listens(addrport, url):
    assert self_check.local_url(addrport) == url


def test_the_command_says_what_answers_and_what_does_not(live_server, settings, capsys):
    # `manage.py self_check`, for an operator (and gunicorn's hook, with -v 0).
    settings.PUBLIC_BASE_URL = live_server.url
    call_command("self_check", wait_for=live_server.url.removeprefix("http://"))
    assert capsys.readouterr().out == f"All addresses answer ({live_server.url}).\n"

    wrong = f"http://127.0.0.1:{free_port()}"
    settings.PUBLIC_BASE_URL = wrong
    with pytest.raises(CommandError, match=f"Not answering: {wrong}/healthz/live"):
        call_command("self_check")
    # -v 0: only the log line says it; the exit status tells a script.
    with pytest.raises(SystemExit) as exited:
        call_command("self_check", verbosity=0)
    assert exited.value.code == 1 and capsys.readouterr().out == ""
