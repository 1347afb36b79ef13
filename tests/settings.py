"""The test suite runs on the production settings, with what a test run needs on top:
a key of its own, the sandboxes on, and no redirect to HTTPS for the test client."""

import os
import secrets

os.environ.setdefault("SECRET_KEY", "test-" + secrets.token_urlsafe(50))
os.environ.setdefault("SANDBOX_ENABLED", "true")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
# A broker queue of this test process's own: tasks the tests queue without a cluster to
# take them must not pile up where another run (or xdist worker) counts them.
os.environ["TASK_QUEUE_PREFIX"] = "tests-" + secrets.token_hex(4)

from upscaler_site.settings import *  # noqa: E402, F403

ALLOWED_HOSTS = [*ALLOWED_HOSTS, "testserver"]  # noqa: F405

# The suite renders pages with DEBUG off but never runs `collectstatic` (the release step):
# plain names here, where production's manifest storage would refuse every page. The
# hashed, compressed files are tested as served, by tests/e2e/test_production.py.
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# whitenoise serves the app folders, as in development, rather than a collected folder.
STATIC_ROOT = None
WHITENOISE_USE_FINDERS = True
