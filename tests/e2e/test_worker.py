"""A real qcluster process takes a job from upload to `succeeded`."""

import re
import time

import pytest

from tests.images import image_bytes

pytestmark = pytest.mark.e2e


def wait_for_state(client, job_id, states, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        html = client.get(f"/jobs/{job_id}/row/").text
        state = re.search(r'class="job-row state-(\w+)"', html).group(1)
        if state in states:
            return state
        time.sleep(0.25)  # polling the page like a user's browser would
    raise AssertionError(f"job {job_id} still {state} after {timeout}s")


def test_a_real_cluster_upscales_an_upload(portal):
    client = portal.signed_in_client()
    client.get("/")
    response = client.post(
        "/",
        data={
            "provider": "local",
            "local-scale": "3",
            "csrfmiddlewaretoken": client.cookies["csrftoken"],
        },
        files={"images": ("cat.png", image_bytes(100, 70, unique=True), "image/png")},
        headers={"HX-Request": "true", "Referer": portal.url},
    )
    assert response.status_code == 201, response.text
    job_id = int(re.search(r'id="job-(\d+)"', response.text).group(1))

    assert wait_for_state(client, job_id, {"succeeded", "failed"}) == "succeeded"
    download = client.get(f"/jobs/{job_id}/download/")
    assert download.status_code == 200
    assert download.headers["content-type"] == "image/png"
    assert download.headers["content-disposition"].startswith("attachment;")
    import io

    from PIL import Image

    assert Image.open(io.BytesIO(download.content)).size == (300, 210)
