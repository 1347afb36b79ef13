"""What makes a sandbox's output honest and tellable apart: a light treatment of its own
(so a compare of several sandboxes shows different pictures, as real providers would)
and a small corner label, "Sandbox · Ximilar 4x GAN", so nobody mistakes it for a real
provider's result. Sizes and formats are untouched: the wire contract decides those.

Both are cheap on purpose (benchmarks push many images through the sandboxes): the
treatments are per-channel lookup tables (one pass in C; a sharpen filter cost ten times
as much on a 2k image), and the label is drawn on a small corner crop only.
"""

import functools

from PIL import Image, ImageDraw, ImageFont

LABEL_ALPHA = 170  # the label box: dark, see-through
MARGIN = 0.012  # of the short side: the gap between the label and the image's edge


def _lut(red, green, blue):
    """A lookup table for an RGB image from three 0-255 -> 0-255 functions."""
    return [max(0, min(255, round(f(v)))) for f in (red, green, blue) for v in range(256)]


def _same(v):
    return v


# One look per provider, each slight: a compare shows them apart, none is a real effect.
TABLES = {
    "pixelcut": _lut(lambda v: v * 1.05 + 3, _same, lambda v: v * 0.93),  # warmer
    "fal": _lut(*[lambda v: 128 + (v - 128) * 1.12] * 3),  # a little more contrast
    "ximilar": _lut(lambda v: v * 0.95, _same, lambda v: v * 1.05 + 4),  # cooler
    "apixo": _lut(*[lambda v: 255 * (v / 255) ** 0.9] * 3),  # a little brighter
    "pixazo": _lut(*[lambda v: 255 * (v / 255) ** 1.12] * 3),  # deeper shadows
}


def treat(img: Image.Image, provider: str) -> Image.Image:
    """The provider's own slight look; alpha (and a grey image's grey) kept as they are."""
    table = TABLES.get(provider)
    if table is None:
        return img
    if img.mode == "RGB":
        return img.point(table)
    if img.mode == "RGBA":
        return img.point(table + list(range(256)))
    if img.mode in ("L", "LA"):
        grey = table[256:512]  # the green curve: a grey image keeps its grey
        return img.point(grey + (list(range(256)) if img.mode == "LA" else []))
    return img


@functools.cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def label(img: Image.Image, text: str) -> Image.Image:
    """`img` with `text` in a see-through dark box in its bottom-left corner, sized to
    the image (a 20th of its short side, 11 to 64 px: still legible on the compare page's
    tiles, small on a large result). Drawn on the corner only."""
    width, height = img.size
    short = min(width, height)
    size = max(11, min(64, short // 20))
    font = _font(size)
    left, top, right, bottom = font.getbbox(text)
    pad = max(2, size // 3)
    box_w = min(width, right - left + 2 * pad)
    box_h = min(height, bottom - top + 2 * pad)
    margin = round(short * MARGIN)
    x0 = max(0, min(margin, width - box_w))
    y0 = max(0, height - box_h - margin)
    area = (x0, y0, x0 + box_w, y0 + box_h)

    under = img.crop(area)
    overlay = Image.new("RGBA", under.size, (0, 0, 0, LABEL_ALPHA))
    ImageDraw.Draw(overlay).text((pad - left, pad - top), text, font=font, fill="white")
    corner = Image.alpha_composite(under.convert("RGBA"), overlay)
    if "A" in img.mode:
        # The picture's own transparency stays under the label: only its colour changes.
        corner.putalpha(under.getchannel("A"))
    img.paste(corner.convert(img.mode), area[:2])  # a fresh image: changed in place
    return img


def finish(img: Image.Image, provider: str, text: str) -> Image.Image:
    """A sandbox's output: its look, then its label."""
    return label(treat(img, provider), text)
