"""Keys come from the environment and never show up in pages, logs, stored fields or
error messages, whatever the provider answers."""

import logging

import pytest

from jobs.models import Job, JobEvent
from jobs.providers import PROVIDER_CLASSES

HTTP_PROVIDERS = [slug for slug in PROVIDER_CLASSES if slug != "local"]


def secret(slug):
    return f"sk-live-{slug}-0123456789abcdef"


@pytest.fixture
def wrong_keys(sandbox, settings):
    """Real-looking keys the sandboxes refuse: every call ends in the provider's 401."""
    settings.PROVIDER_SETTINGS = {
        slug: {"api_key": secret(slug), "base_url": f"{sandbox.url}/sandbox/{slug}"}
        for slug in HTTP_PROVIDERS
    }


@pytest.mark.parametrize("slug", HTTP_PROVIDERS)
def test_a_refused_key_is_never_repeated_anywhere(
    slug, sandbox, wrong_keys, submit, client, owner, caplog
):
    caplog.set_level(logging.DEBUG)
    job = sandbox.settle(submit(slug, name="secret.png"))
    assert job.state == Job.State.FAILED
    assert job.sandbox is False  # a key is configured: this is "the real API"
    stored = [
        job.error_message,
        job.error_code,
        job.result_url,
        job.provider_task_id,
        *JobEvent.objects.filter(job=job).values_list("detail", flat=True),
    ]
    assert not any(secret(slug) in text for text in stored)
    assert secret(slug) not in caplog.text

    client.force_login(owner)
    for url in ("/", "/jobs/", f"/jobs/{job.pk}/", f"/jobs/{job.pk}/row/", "/providers/"):
        assert secret(slug) not in client.get(url).content.decode()
