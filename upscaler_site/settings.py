"""Settings for Upscaler Portal: everything comes from the environment.

Production is what you get when nothing is set: DEBUG off, a strong SECRET_KEY required,
HTTPS settings on, a strict Content-Security-Policy, throttled sign-in, sandboxes off.
`bin/run` turns development on (DEBUG=true), which also turns the sandboxes on.

The embedded default needs nothing installed beyond Python packages: SQLite in WAL
mode, django-q2's ORM broker, media on local disk. DATABASE_URL / REDIS_URL switch to
PostgreSQL / Redis without code changes.
"""

from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from csp.constants import NONE, SELF

from upscaler_site.env import (
    derived_secret,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_str,
    secret_key,
)
from upscaler_site.logs import log_format, logging_config
from upscaler_site.storage import BACKEND as S3_BACKEND
from upscaler_site.storage import origins as storage_origins
from upscaler_site.storage import s3_options

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(exist_ok=True)  # SQLite and the media folder live here by default

# --- Mode -------------------------------------------------------------------------------
DEBUG = env_bool("DEBUG", False)
PRODUCTION = not DEBUG  # the default for every security setting below
SECRET_KEY = secret_key(DEBUG, VAR_DIR)

# The address providers (and the sandboxes) use to reach us: webhooks and signed input
# URLs are built on it. Defaults to what bin/run serves.
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
_public = urlsplit(PUBLIC_BASE_URL)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS") or sorted(
    {_public.hostname or "localhost", "localhost", "127.0.0.1"}
)
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS") or (
    [f"{_public.scheme}://{_public.netloc}"] if _public.scheme == "https" else []
)

# --- HTTPS (on in production; each can be set on its own) ------------------------------
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", PRODUCTION)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", PRODUCTION)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", PRODUCTION)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", PRODUCTION)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", PRODUCTION)
# The header a TLS-terminating proxy sets, as "Header-Name: value"; empty: no proxy.
_proxy_header = env_str("SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto: https" if PRODUCTION else "")
if _proxy_header:
    _name, _, _value = _proxy_header.partition(":")
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _name.strip().upper().replace("-", "_"), _value.strip())
# How many proxies in front of us append to X-Forwarded-For (sign-in throttling counts
# attempts per client address, which must not be the proxy's).
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 1 if _proxy_header else 0)
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

# --- Sandboxes: local emulators of the providers' APIs -----------------------------------
# On in development; production turns them on only when asked (demos, staging).
SANDBOX_ENABLED = env_bool("SANDBOX_ENABLED", DEBUG)
# The key every sandbox accepts: this install's own, derived from SECRET_KEY.
SANDBOX_API_KEY = derived_secret(SECRET_KEY, "sandbox-api-key")
SANDBOX_LATENCY = env_float("SANDBOX_LATENCY", 4.0)  # seconds a sandbox task takes

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials",
    "django_q",
    "axes",
    "csp",
    "billing",
    "jobs",
    *(["jobs.sandbox"] if SANDBOX_ENABLED else []),
]

MIDDLEWARE = [
    # First: /healthz answers before the HTTPS redirect and the host check (probes).
    "jobs.health.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files (hashed, compressed, cached for ever) straight after the HTTPS
    # redirect, before sessions and the rest have any work to do for them.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as axes asks
]

ROOT_URLCONF = "upscaler_site.urls"
WSGI_APPLICATION = "upscaler_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "billing.context.budget",
            ],
            "builtins": [
                "django_htmx.templatetags.django_htmx",
                "template_partials.templatetags.partials",
            ],
        },
    },
]

# --- Content-Security-Policy: no inline script or style anywhere -----------------------
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        # blob: and data: for the thumbnails the upload page draws from chosen files.
        "img-src": [SELF, "blob:", "data:"],
        "connect-src": [SELF],
        "font-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# --- Database -----------------------------------------------------------------------
SQLITE_PATH = VAR_DIR / "portal.sqlite3"
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{SQLITE_PATH}"),
        # 0 by default: the development server runs each request in a new thread, and a
        # persistent connection per dead thread soon exhausts PostgreSQL's slots. Set it
        # (e.g. 60) under gunicorn, whose threads live as long as their worker.
        conn_max_age=env_int("CONN_MAX_AGE", 0),
        # A kept connection is checked before a request reuses it, so a database restart
        # or a proxy that dropped idle connections costs a reconnect, not an error page.
        conn_health_checks=env_bool("CONN_HEALTH_CHECKS", True),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        # IMMEDIATE takes the write lock at BEGIN, so two writers queue on the busy
        # timeout instead of failing with "database is locked" halfway through.
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Tests use a file, not :memory:, so the sandboxes' webhook threads see the same data.
    DATABASES["default"]["TEST"] = {
        "NAME": env_str("SQLITE_TEST_PATH", str(VAR_DIR / "test.sqlite3"))
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- django-q2 ----------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
TASK_TIMEOUT = env_int("TASK_TIMEOUT", 300)  # seconds a task may run before it is killed
# Queues by kind, so a download never waits behind a burst of submits, and housekeeping
# (the sweep, the daily purge) never takes a worker a job needs. Each queue is served by
# a cluster of its own; `manage.py cluster` starts (and supervises) one for each.
# TASK_QUEUE_PREFIX names them all (several portals may share one Redis).
TASK_QUEUE_PREFIX = env_str("TASK_QUEUE_PREFIX", "upscaler")
TASK_QUEUES = {
    "submit": TASK_QUEUE_PREFIX,
    "finish": f"{TASK_QUEUE_PREFIX}-finish",
    "house": f"{TASK_QUEUE_PREFIX}-house",
}
QUEUE_WORKERS = {
    "submit": env_int("Q_WORKERS", 2),
    "finish": env_int("Q_FINISH_WORKERS", 2),
    "house": 1,
}


def _cluster(kind: str) -> dict:
    workers = QUEUE_WORKERS[kind]
    # Kept short so a task waits little in a worker's local queue (see `retry`).
    return {"workers": workers, "queue_limit": workers * 2}


Q_CLUSTER = {
    # The submit queue's cluster; the others are ALT_CLUSTERS of the same name (django-q2
    # signs tasks with the name, so every queue must share it).
    "name": TASK_QUEUES["submit"],
    **_cluster("submit"),
    "ALT_CLUSTERS": {TASK_QUEUES[kind]: _cluster(kind) for kind in ("finish", "house")},
    "timeout": TASK_TIMEOUT,
    # A leased task comes back after `retry` seconds. It must outlast the longest a
    # lease can live (waiting in the local queue + running up to `timeout`), or the
    # same task runs twice. The queue is kept short so the wait stays small.
    "retry": TASK_TIMEOUT * 3,
    "max_attempts": 1,  # our own code decides what is retried; the Job row is the truth
    "ack_failures": True,
    "catch_up": False,
    # Failed tasks are kept (admin: Failed tasks); successful ones are not: the job's own
    # timeline records them, and with a positive limit django-q2 loads every kept
    # success row (up to the limit, FOR UPDATE) on each task to prune one: most of the
    # cluster's CPU per job at 1000 (issue #10).
    "save_limit": -1,
    "poll": 0.5,  # ORM broker: how often an idle worker looks for work
    "label": "Tasks",
}
# `manage.py cluster` restarts its qcluster when work has waited this long while the
# cluster started no task (see jobs/watchdog.py), checking every CLUSTER_CHECK_SECONDS.
CLUSTER_STALL_SECONDS = env_int("CLUSTER_STALL_SECONDS", 30)
CLUSTER_CHECK_SECONDS = env_float("CLUSTER_CHECK_SECONDS", 5.0)
# On SIGTERM, `cluster` gives its qclusters this long to finish running tasks, then
# SIGKILLs them: under the 30 s a process manager waits before SIGKILLing it in turn.
CLUSTER_STOP_GRACE_SECONDS = env_float("CLUSTER_STOP_GRACE_SECONDS", 15.0)
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# --- API: rate limit per token (jobs/api/auth.py) -----------------------------------------
# A fixed one-minute window counted in Django's cache. With REDIS_URL, Redis: one count for
# every process and machine (INCR is atomic). Without, each process's own memory: exact for
# the embedded default (`bin/run`: one web process), but N gunicorn workers without Redis
# allow up to N times the limit (README, "API"). Not the database cache: it needs a
# `createcachetable` step, its increment is a read then a write, and on SQLite every API
# call would take the one write lock.
API_RATE_PER_MINUTE = env_int("API_RATE_PER_MINUTE", 120)
# Where each token's count lives: Redis (the cache below) when there is one, else the
# token's own row, so every web process and machine shares one count either way.
API_RATE_COUNTER = "cache" if REDIS_URL else "database"
# An Idempotency-Key claim still "in progress" after this long was left by a killed
# process (longer than any request lives: gunicorn kills a worker at GUNICORN_TIMEOUT):
# answered from the jobs it committed, or freed if it made none.
IDEMPOTENCY_STALE_SECONDS = env_int("IDEMPOTENCY_STALE_SECONDS", 120)
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": TASK_QUEUE_PREFIX,  # several portals may share one Redis
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Auth ---------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # refuses a locked-out user or address first
    "django.contrib.auth.backends.ModelBackend",
]
# Sign-in throttling (django-axes): after LOGIN_FAILURE_LIMIT failures for one user name,
# or from one address, further attempts are refused for LOGIN_COOLOFF_MINUTES, on the
# portal's sign-in page and the admin's alike. A success resets the count.
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_CLIENT_IP_CALLABLE = "upscaler_site.net.client_ip"
AXES_VERBOSE = False
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "jobs:upload"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

# --- Files --------------------------------------------------------------------------
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "/media/"  # never served directly: every file goes through a team-scoped view
STATIC_URL = "static/"
# Where `collectstatic` (the release step) puts the files whitenoise serves.
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
# Media (inputs, results, thumbnails): local disk under MEDIA_ROOT, or a private
# S3-compatible bucket when STORAGE_URL or AWS_STORAGE_BUCKET_NAME is set (see
# upscaler_site/storage.py for the format). In the bucket, readers get presigned links
# that live AWS_QUERYSTRING_EXPIRE seconds (600 by default); nothing is ever public.
_s3 = s3_options()
# Where the browser loads images from (redirects to presigned links), and where the
# sandboxes may fetch inputs: the bucket's own origins, nothing broader.
STORAGE_ORIGINS = storage_origins(_s3) if _s3 else []
STORAGES = {
    "default": (
        {"BACKEND": S3_BACKEND, "OPTIONS": _s3}
        if _s3
        else {"BACKEND": "django.core.files.storage.FileSystemStorage"}
    ),
    # Production: hashed names (cached for ever by browsers, see whitenoise) and gzip and
    # brotli copies, written by `collectstatic`; a page naming a file the release step did
    # not collect fails at once rather than going out unstyled. Development serves the
    # app folders as they are, with no collectstatic.
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "upscaler_site.staticfiles.StaticFilesStorage"
    },
}
# With media in the bucket, images and thumbnails are redirects to presigned links: the
# browser follows them there, so the CSP lets images come from the bucket's origins.
CONTENT_SECURITY_POLICY["DIRECTIVES"]["img-src"] += STORAGE_ORIGINS
# Uploads above this spill to a temporary file instead of memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# The form refuses files over MAX_UPLOAD_BYTES itself; this only caps the whole request.
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FILES = 50
# Inputs and results are deleted this many days after their job finished (a daily
# schedule, jobs/retention.py); the job's row, history and cost stay. 0: kept for ever.
RETENTION_DAYS = env_int("RETENTION_DAYS", 30)
if RETENTION_DAYS < 0:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("RETENTION_DAYS must be 0 (keep for ever) or a number of days")

# --- Upload limits (apply to every provider; each provider adds its own) ---------------
MAX_UPLOAD_BYTES = env_int("MAX_UPLOAD_BYTES", 25 * 1024 * 1024)
MIN_INPUT_SIDE = 64
MAX_INPUT_PIXELS = env_int("MAX_INPUT_PIXELS", 50_000_000)  # above this: decompression bomb
LOCAL_MAX_OUTPUT_PIXELS = env_int("LOCAL_MAX_OUTPUT_PIXELS", 64_000_000)
# The largest result we store, whatever the provider (fal allows up to 100 MP). Predicted
# outputs above it are refused before anything is sent (and paid for).
MAX_RESULT_PIXELS = env_int("MAX_RESULT_PIXELS", 150_000_000)


# --- Providers ----------------------------------------------------------------------
# A provider with no key talks to its sandbox under PUBLIC_BASE_URL/sandbox/<slug>/ when
# sandboxes are on, and is unavailable when they are off.
PROVIDER_SETTINGS = {
    "pixazo": {"api_key": env_str("PIXAZO_API_KEY"), "base_url": env_str("PIXAZO_BASE_URL")},
    "pixelcut": {
        "api_key": env_str("PIXELCUT_API_KEY"),
        "base_url": env_str("PIXELCUT_BASE_URL"),
    },
    "fal": {"api_key": env_str("FAL_KEY"), "base_url": env_str("FAL_QUEUE_BASE_URL")},
    "ximilar": {
        "api_key": env_str("XIMILAR_API_TOKEN"),
        "base_url": env_str("XIMILAR_BASE_URL"),
    },
    "apixo": {"api_key": env_str("APIXO_API_KEY"), "base_url": env_str("APIXO_BASE_URL")},
}
WEBHOOKS_ENABLED = env_bool("WEBHOOKS_ENABLED", True)
PROVIDER_TIMEOUT = env_float("PROVIDER_TIMEOUT", 30.0)  # seconds for one API call
INPUT_URL_TTL = env_int("INPUT_URL_TTL", 3600)  # seconds a signed input URL stays valid
RESULT_MAX_BYTES = env_int("RESULT_MAX_BYTES", 200 * 1024 * 1024)
RESULT_DEADLINE = env_float("RESULT_DEADLINE", 120.0)  # seconds to download one result
# Retries of 429/5xx/no connection go on, with exponential backoff and jitter (at most
# RETRY_MAX_DELAY apart, never sooner than Retry-After), until RETRY_BUDGET_SECONDS have
# passed since the first failure; SUBMIT_MAX_ATTEMPTS is only a safety cap above that.
RETRY_BUDGET_SECONDS = env_int("RETRY_BUDGET_SECONDS", 300)
RETRY_MAX_DELAY = env_float("RETRY_MAX_DELAY", 30.0)
SUBMIT_MAX_ATTEMPTS = env_int("SUBMIT_MAX_ATTEMPTS", 30)
# Recovery by lease (jobs/leases.py, jobs/recovery.py). A submit or a download holds its
# job's lease, renewed every third of its length while the worker lives; a lease run out
# means the worker died, and the tracker takes the step over on its next tick. A submit
# may block for PROVIDER_TIMEOUT on one read: its lease outlasts that by a margin. A
# download renews in the background whatever RESULT_DEADLINE allows, so its lease is
# short: a download lost with its worker is tried again within ~30 s.
SUBMIT_LEASE_SECONDS = env_float("SUBMIT_LEASE_SECONDS", PROVIDER_TIMEOUT + 15)
FETCH_LEASE_SECONDS = env_float("FETCH_LEASE_SECONDS", 30.0)
# A queued job (or a result waiting for its download) handed to the broker longer ago
# than this, and no longer possibly waiting there (see jobs/recovery.py), lost its task
# with a cluster: it is sent again.
REQUEUE_AFTER_SECONDS = env_float("REQUEUE_AFTER_SECONDS", 20.0)
POLL_MAX_SECONDS = env_int("POLL_MAX_SECONDS", 3600)  # a job running longer is failed
TRACKER_CONCURRENCY = env_int("TRACKER_CONCURRENCY", 32)  # polls in flight at once

# --- Locale -------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

# --- Email: invitations, budget warnings, "batch done" -----------------------------------
# SMTP in production (an invitation's one-time link must never land in a log); printed to
# the console in development (bin/run), where there is no mail server to ask.
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "portal@localhost")
# "E-mail me when this batch ends": sent only when the batch took longer than this, from
# its first job created to its last finished (jobs/notices.py).
BATCH_EMAIL_AFTER_SECONDS = env_int("BATCH_EMAIL_AFTER_SECONDS", 180)
# SMTP, when EMAIL_BACKEND is django.core.mail.backends.smtp.EmailBackend (invitations,
# budget warnings).
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)  # seconds: a stuck server never hangs a page

# --- Logging: one line per event on stderr, every line through the secret scrubber ------
# LOG_FORMAT=json writes one JSON object per line (upscaler_site/logs.py says what is in it).
LOG_FORMAT = log_format(env_str("LOG_FORMAT", "plain"))
LOGGING = logging_config(LOG_FORMAT, env_str("LOG_LEVEL", "INFO"))
