"""Strict helpers that read settings from the environment."""

import hashlib
import hmac
import os
import secrets
import sys
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {raw!r}") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {raw!r}") from None


def env_list(name: str, default: str = "") -> list[str]:
    return [part.strip() for part in os.environ.get(name, default).split(",") if part.strip()]


def stop_startup(message: str):
    """Refuse to start, with one line that says what to set (no traceback to read)."""
    sys.exit(f"Upscaler Portal will not start: {message}")


# --- the secret key --------------------------------------------------------------------
MIN_SECRET_LENGTH = 50
MIN_SECRET_UNIQUE = 5
# The development key older versions shipped in the source: known to anyone.
KNOWN_KEYS = {"dev-only-insecure-key-set-SECRET_KEY-in-production"}
HOW_TO_SET = (
    "set SECRET_KEY to a random value of 50 or more characters, for example the output of "
    "python3 -c 'import secrets; print(secrets.token_urlsafe(50))'"
)


def secret_key_problem(key: str) -> str:
    """Why `key` cannot protect sessions and signed links, or "" when it can."""
    if not key:
        return "SECRET_KEY is not set"
    if key in KNOWN_KEYS or key.startswith("django-insecure"):
        return "SECRET_KEY is a published development value"
    if len(key) < MIN_SECRET_LENGTH or len(set(key)) < MIN_SECRET_UNIQUE:
        return f"SECRET_KEY is too weak ({len(key)} characters)"
    return ""


def secret_key(debug: bool, var_dir: Path) -> str:
    """SECRET_KEY from the environment. In development only, a key of this install's own
    is made once and kept in VAR_DIR; production refuses to start without a strong one."""
    key = os.environ.get("SECRET_KEY", "")
    if not key and debug:
        path = var_dir / "secret_key"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(MIN_SECRET_LENGTH))
        key = path.read_text().strip()
    problem = secret_key_problem(key)
    if problem:
        stop_startup(f"{problem}; {HOW_TO_SET}.")
    return key


def derived_secret(secret_key: str, purpose: str) -> str:
    """A secret of its own for `purpose`, derived from SECRET_KEY (so never in the source,
    different on every install, and useless for anything else)."""
    digest = hmac.new(secret_key.encode(), f"upscaler:{purpose}".encode(), hashlib.sha256)
    return digest.hexdigest()
