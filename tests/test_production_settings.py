"""Production is what you get when nothing is set. Each test starts a fresh Python with a
clean environment (only PATH and HOME, plus what the test names), the way a deployment
starts, and reads what Django made of it."""

import json
import os
import secrets
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The production environment the README documents.
PRODUCTION = {
    "PUBLIC_BASE_URL": "https://upscaler.example.com",
    "ALLOWED_HOSTS": "upscaler.example.com",
}
HOST = "upscaler.example.com"


def strong_key() -> str:
    return secrets.token_urlsafe(50)


def run(args, env: dict, var_dir: Path) -> subprocess.CompletedProcess:
    clean = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", str(var_dir)),
        "DJANGO_SETTINGS_MODULE": "upscaler_site.settings",
        "VAR_DIR": str(var_dir),
        **env,
    }
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120
    )


def probe(code: str, env: dict, var_dir: Path) -> dict:
    """Run `code` after django.setup(); it sets `out`, which comes back as JSON."""
    script = "import json, django\ndjango.setup()\nout = {}\n"
    script += textwrap.dedent(code) + "\nprint(json.dumps(out))\n"
    done = run(["-c", script], env, var_dir)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def var_dir(tmp_path) -> Path:
    return tmp_path


@pytest.fixture(scope="module")
def migrated(tmp_path_factory, collected_static) -> Path:
    """A VAR_DIR after the release step: its SQLite database migrated and its static files
    collected (for the probes that render pages and sign someone in)."""
    var_dir = tmp_path_factory.mktemp("var")
    (var_dir / "static").symlink_to(collected_static)  # the default STATIC_ROOT
    env = {"SECRET_KEY": strong_key(), "SANDBOX_ENABLED": "true"}  # its tables too
    done = run(["manage.py", "migrate", "-v0"], env, var_dir)
    assert done.returncode == 0, done.stderr
    return var_dir


# --- start-up -----------------------------------------------------------------------------


def test_check_deploy_finds_nothing_to_warn_about_in_the_production_environment(var_dir):
    done = run(
        ["manage.py", "check", "--deploy"], {**PRODUCTION, "SECRET_KEY": strong_key()}, var_dir
    )
    assert done.returncode == 0, done.stderr
    assert "System check identified no issues" in done.stdout
    assert "WARNING" not in done.stdout + done.stderr


def assert_refused_to_start(done: subprocess.CompletedProcess, why: str):
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr  # one line that says what to set, no traceback
    assert lines[0].startswith("Upscaler Portal will not start: ")
    assert "SECRET_KEY" in lines[0] and why in lines[0]


def test_with_nothing_set_it_refuses_to_start_and_names_secret_key(var_dir):
    done = run(["-c", "import django; django.setup()"], {}, var_dir)
    assert_refused_to_start(done, "not set")
    done = run(["manage.py", "check"], {}, var_dir)
    assert_refused_to_start(done, "not set")
    assert not (var_dir / "secret_key").exists()  # production never makes one up


@pytest.mark.parametrize(
    "key, why",
    [
        ("too-short-a-key", "too weak"),
        ("a" * 60, "too weak"),
        ("django-insecure-" + secrets.token_urlsafe(50), "published"),
        ("dev-only-insecure-key-set-SECRET_KEY-in-production", "published"),
    ],
    # Fixed ids: the random key must not change the test's name (xdist compares them).
    ids=["short", "repeated", "django-insecure", "old-development-key"],
)
def test_a_weak_secret_key_is_refused_the_same_way(var_dir, key, why):
    done = run(["-c", "import django; django.setup()"], {"SECRET_KEY": key}, var_dir)
    assert_refused_to_start(done, why)


def test_debug_is_off_when_nothing_says_otherwise(var_dir):
    out = probe(
        """
        from django.conf import settings
        out["debug"] = settings.DEBUG
        out["sandbox"] = settings.SANDBOX_ENABLED
        out["apps"] = settings.INSTALLED_APPS
        out["mail"] = settings.EMAIL_BACKEND
        """,
        {"SECRET_KEY": strong_key()},
        var_dir,
    )
    assert out["debug"] is False
    # Invitation links carry a one-time token: in production they go out by SMTP, never
    # to the console (a log).
    assert out["mail"] == "django.core.mail.backends.smtp.EmailBackend"
    assert out["sandbox"] is False and "jobs.sandbox" not in out["apps"]


# --- HTTPS --------------------------------------------------------------------------------

REQUESTS = f"""
from django.test import Client
from django.contrib.auth import get_user_model
c = Client(HTTP_HOST="{HOST}")
plain = c.get("/accounts/login/")
out["plain"] = [plain.status_code, plain.headers.get("Location", "")]
secure = c.get("/accounts/login/", secure=True)
out["hsts"] = secure.headers.get("Strict-Transport-Security", "")
out["csrf_cookie_secure"] = bool(secure.cookies["csrftoken"]["secure"])
import secrets
who = {{"username": secrets.token_hex(6), "password": "pw-probe-12345"}}
get_user_model().objects.create_user(**who)
signed = c.post("/accounts/login/", who, secure=True)
out["signed_in"] = signed.status_code
out["session_cookie_secure"] = bool(signed.cookies["sessionid"]["secure"])
behind_proxy = c.get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https")
out["behind_proxy"] = behind_proxy.status_code
"""


def test_production_redirects_plain_http_and_marks_everything_secure(migrated):
    out = probe(REQUESTS, {**PRODUCTION, "SECRET_KEY": strong_key()}, migrated)
    assert out["plain"] == [301, f"https://{HOST}/accounts/login/"]
    assert out["csrf_cookie_secure"] is True
    assert out["signed_in"] == 302 and out["session_cookie_secure"] is True
    assert out["hsts"] == "max-age=31536000; includeSubDomains; preload"
    # Behind the TLS-terminating proxy the README describes, its header says "https".
    assert out["behind_proxy"] == 200


def test_each_https_setting_can_be_turned_off_from_the_environment(migrated):
    off = {
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        "SECURE_HSTS_SECONDS": "0",
    }
    out = probe(REQUESTS, {**PRODUCTION, **off, "SECRET_KEY": strong_key()}, migrated)
    assert out["plain"] == [200, ""]
    assert out["csrf_cookie_secure"] is False and out["session_cookie_secure"] is False
    assert out["hsts"] == ""

    partial = {"SECURE_HSTS_INCLUDE_SUBDOMAINS": "false", "SECURE_HSTS_PRELOAD": "false"}
    out = probe(REQUESTS, {**PRODUCTION, **partial, "SECRET_KEY": strong_key()}, migrated)
    assert out["hsts"] == "max-age=31536000"

    out = probe(
        REQUESTS,
        {**PRODUCTION, "SECURE_PROXY_SSL_HEADER": "", "SECRET_KEY": strong_key()},
        migrated,
    )
    assert out["behind_proxy"] == 301  # no proxy: a client's header proves nothing


# --- development --------------------------------------------------------------------------


def test_development_makes_a_private_key_once_and_reuses_it(var_dir):
    code = """
    from django.conf import settings
    out["key"] = settings.SECRET_KEY
    out["debug"] = settings.DEBUG
    out["mail"] = settings.EMAIL_BACKEND
    """
    first = probe(code, {"DEBUG": "true"}, var_dir)
    path = var_dir / "secret_key"
    assert first["debug"] is True
    assert first["mail"] == "django.core.mail.backends.console.EmailBackend"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == first["key"] and len(first["key"]) >= 50
    assert probe(code, {"DEBUG": "true"}, var_dir)["key"] == first["key"]


# --- the sandbox --------------------------------------------------------------------------

SANDBOX = f"""
from django.test import Client
c = Client(HTTP_HOST="{HOST}")
out["upscale"] = c.post("/sandbox/pixelcut/v1/upscale", secure=True).status_code
out["files"] = c.get("/sandbox/files/nothing/", secure=True).status_code
"""


def test_the_sandbox_is_not_there_in_production(migrated):
    out = probe(SANDBOX, {**PRODUCTION, "SECRET_KEY": strong_key()}, migrated)
    assert out == {"upscale": 404, "files": 404}


def test_the_sandbox_answers_when_it_is_switched_on(migrated):
    env = {**PRODUCTION, "SECRET_KEY": strong_key(), "SANDBOX_ENABLED": "true"}
    out = probe(SANDBOX, env, migrated)
    assert out["upscale"] == 401  # there, and asking for its key
