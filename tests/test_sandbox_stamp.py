"""Sandbox results are honest and tellable apart (issue #11, item 11): each sandbox
gives its output a slight look of its own and a small corner label naming it, while the
size and format stay what the wire contract says; the real (free) local upscaler's
output is left alone."""

import io

import pytest
from PIL import Image, ImageChops, ImageStat

from jobs import imaging
from jobs.sandbox import engine, stamp
from tests.images import image_bytes

SIZE = (512, 384)  # the output asked for (a 2x of 256x192)


def decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return img


def mean_difference(a: Image.Image, b: Image.Image, box=None) -> float:
    a, b = a.convert("RGB"), b.convert("RGB")
    if box:
        a, b = a.crop(box), b.crop(box)
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


def sandbox_output(provider: str, label: str, fmt="PNG", source=None) -> bytes:
    source = source or image_bytes(256, 192, "PNG")
    task = engine.create_task(
        provider, source, width=SIZE[0], height=SIZE[1], format=fmt, label=label
    )
    return engine.output_bytes(task)


def plain_upscale(fmt="PNG") -> bytes:
    data, _ = imaging.resize(io.BytesIO(image_bytes(256, 192, "PNG")), SIZE, fmt)
    return data


def test_two_sandboxes_and_local_give_three_different_pictures(db):
    ximilar = decode(sandbox_output("ximilar", "2x GAN"))
    pixelcut = decode(sandbox_output("pixelcut", "2x"))
    local = decode(plain_upscale())  # what jobs/providers/local.py makes
    assert ximilar.size == pixelcut.size == local.size == SIZE
    assert mean_difference(ximilar, pixelcut) > 2
    assert mean_difference(ximilar, local) > 1 and mean_difference(pixelcut, local) > 1


@pytest.mark.parametrize("provider", ["pixazo", "pixelcut", "fal", "ximilar", "apixo"])
def test_the_label_marks_a_corner_and_the_rest_stays_close(db, provider):
    out = decode(sandbox_output(provider, "2x"))
    plain = decode(plain_upscale())
    width, height = SIZE
    corner = (0, height - 20, 120, height)  # bottom left: the label
    rest = (width // 2, 0, width, height // 2)  # top right: the picture, lightly treated
    assert mean_difference(out, plain, corner) > 25
    assert mean_difference(out, plain, rest) < 12


@pytest.mark.parametrize(("fmt", "mode"), [("JPEG", "RGB"), ("PNG", "RGBA"), ("WEBP", "RGB")])
def test_size_format_and_transparency_are_kept(db, fmt, mode):
    source = image_bytes(256, 192, "PNG", mode=mode)
    out = sandbox_output("ximilar", "2x", fmt=fmt, source=source)
    img = decode(out)
    assert (img.format, img.size) == (fmt, SIZE)
    if mode == "RGBA":
        assert img.mode == "RGBA"
        # The label changes colours, never the picture's own transparency.
        assert img.getchannel("A").getextrema() == (200, 200)


def test_the_label_names_the_provider_and_what_was_asked(db):
    task = engine.create_task(
        "ximilar", image_bytes(64, 64), width=256, height=256, format="PNG", label="4x GAN"
    )
    assert engine.stamp_text(task) == "Sandbox · Ximilar 4x GAN"


def test_a_grey_image_stays_grey():
    grey = Image.new("L", (300, 200), 90)
    out = stamp.finish(grey, "pixelcut", "Sandbox · Pixelcut 2x")
    assert out.mode == "L" and out.size == (300, 200)


def test_the_sandboxes_label_their_real_answers(sandbox, submit):
    """Through the adapters and the sandboxes over HTTP: the stored results carry the
    label their request asked for, and local's result does not."""
    labelled = {}
    for provider, options in (("ximilar", {"model_type": "gan"}), ("pixazo", {})):
        job = sandbox.settle(submit(provider, image={"width": 200, "height": 160}, **options))
        assert job.state == "succeeded", job.error_message
        with job.output_file.open("rb") as stream:
            labelled[provider] = decode(stream.read())
    task = engine.SandboxTask.objects.get(provider="ximilar")
    assert engine.stamp_text(task).startswith("Sandbox · Ximilar ")
    assert "GAN" in engine.stamp_text(task)
    assert mean_difference(labelled["ximilar"], labelled["pixazo"]) > 1


def test_each_sandbox_labels_itself_with_the_name_the_portal_shows():
    from jobs.providers import PROVIDER_CLASSES

    shown = {slug: cls.name for slug, cls in PROVIDER_CLASSES.items() if slug != "local"}
    assert shown == engine.NAMES
