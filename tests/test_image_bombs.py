"""Cheap checks first: a file is judged by its header (size, format, pixel count and
every provider limit) before any pixel is decoded."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import ImageFile

from jobs import intake
from tests.images import image_bytes, png_zip_bomb, upload

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def decodes(monkeypatch):
    """Every image whose pixels get decoded, by size."""
    seen = []
    real = ImageFile.ImageFile.load

    def load(self):
        if self.tile:  # pixels still to decode (a loaded image has no tiles left)
            seen.append(self.size)
        return real(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return seen


@pytest.mark.parametrize(
    "choice, words",
    [
        (("pixelcut", {"scale": 2}), "Pixelcut takes at most 3000x3000 pixels"),
        (("local", {"scale": 3}), "over the local upscaler's limit"),
        (("fal", {"scale": 12}), "fal's limit is 100 MP"),
    ],
)
def test_a_provider_limit_refuses_from_the_header_without_decoding(
    owner, team, decodes, choice, words
):
    bomb = upload("bomb.png", data=png_zip_bomb(4000, 4000))
    with pytest.raises(intake.SubmissionRefused) as refused:
        intake.submit_uploads(user=owner, team=team, files=[bomb], choices=[choice])
    assert words in " ".join(refused.value.errors)
    assert decodes == []


def test_the_pixel_cap_refuses_from_the_header_without_decoding(owner, team, decodes, settings):
    settings.MAX_INPUT_PIXELS = 10_000_000
    bomb = upload("bomb.png", data=png_zip_bomb(4000, 4000))
    with pytest.raises(intake.SubmissionRefused) as refused:
        intake.submit_uploads(user=owner, team=team, files=[bomb], choices=[("apixo", {})])
    assert "more than the 10 megapixels we accept" in refused.value.errors[0]
    assert decodes == []


def test_an_image_that_passes_every_check_is_decoded_once(owner, team, decodes):
    files = [upload("fine.png", data=image_bytes(96, 80))]
    intake.submit_uploads(user=owner, team=team, files=files, choices=[("apixo", {})])
    assert decodes == [(96, 80)]  # the thumbnail's decode, which also proves the pixels


def test_a_damaged_file_is_still_refused_once_its_header_passes(owner, team):
    data = image_bytes(200, 200, fmt="PNG")
    damaged = upload("cut.png", data=data[: len(data) // 2])
    with pytest.raises(intake.SubmissionRefused) as refused:
        intake.submit_uploads(user=owner, team=team, files=[damaged], choices=[("local", {})])
    assert refused.value.errors == [
        "cut.png: The file is truncated or damaged: its pixels could not be decoded."
    ]


# Runs in a fresh interpreter, so its peak memory is its own: ru_maxrss only grows.
MEASURE = r"""
import json, resource, sys
import django
django.setup()
from django.core.files.uploadedfile import SimpleUploadedFile
from jobs import intake
from tests.images import image_bytes, png_zip_bomb

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def submit(name, data):
    files = [SimpleUploadedFile(name, data, "image/png")]
    try:
        # Refused before the team is needed, so no database is touched.
        choice = [("pixelcut", {"scale": 2})]
        intake.submit_uploads(user=None, team=None, files=files, choices=choice)
    except intake.SubmissionRefused as refused:
        return refused.errors

bomb = png_zip_bomb(7000, 7000)  # 49 MP: 147 MB of pixels in a file of ~150 KB
submit("warm-up.png", png_zip_bomb(3100, 100))  # loads every module the path needs
before = peak_mb()
errors = submit("bomb.png", bomb)
print(json.dumps({"errors": errors, "grew_mb": peak_mb() - before, "file_kb": len(bomb) / 1024}))
"""


def test_refusing_a_49_mp_zip_bomb_costs_under_20_mb(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "VAR_DIR": str(tmp_path),
        "PYTHONPATH": str(ROOT),
    }
    out = subprocess.run(
        [sys.executable, "-c", MEASURE], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert "Pixelcut takes at most 3000x3000 pixels at 2x" in result["errors"][0]
    assert result["file_kb"] < 500
    assert result["grew_mb"] < 20, result
