"""The test suite runs on the production settings, with what a test run needs on top:
a key of its own, the sandboxes on, and no redirect to HTTPS for the test client."""

import os
import secrets

os.environ.setdefault("SECRET_KEY", "test-" + secrets.token_urlsafe(50))
os.environ.setdefault("SANDBOX_ENABLED", "true")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")

from upscaler_site.settings import *  # noqa: E402, F403

ALLOWED_HOSTS = [*ALLOWED_HOSTS, "testserver"]  # noqa: F405
