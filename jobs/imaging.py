"""Decoding, validation, thumbnails and resizing with Pillow.

Nothing is trusted by file name or browser type: every upload and every provider
result is decoded here before it is stored.
"""

import io
import warnings
from dataclasses import dataclass, field

from django.conf import settings
from PIL import Image, ImageOps

# What users may upload and what we store. GIF, SVG, TIFF, EPS... are refused.
ACCEPTED_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
THUMB_SIDE = 320


class ImageRefused(Exception):
    """An image we will not take, with a message in plain words."""

    def __init__(self, message: str, code: str = "bad_image"):
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class ImageInfo:
    format: str  # "JPEG", "PNG" or "WEBP"
    width: int
    height: int
    has_alpha: bool
    size_bytes: int
    # The content's sha256 when known (stored uploads; sizes the browser measured): the
    # same image with the same provider and options can reuse a result (jobs/reuse.py).
    sha256: str = field(default="", compare=False)

    @property
    def extension(self) -> str:
        return ACCEPTED_FORMATS[self.format]

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]

    @property
    def pixels(self) -> int:
        return self.width * self.height


def human_bytes(n: int) -> str:
    if n >= 1024 * 1024 * 1024:
        return f"{n / (1024 * 1024 * 1024):.1f} GB"
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MB"
    if n >= 1024:
        return f"{n / 1024:.0f} KB"
    return f"{n} bytes"


def _open(stream, max_pixels: int) -> Image.Image:
    """Open an image by its header only: the format and the pixel count are judged before
    a single pixel is decoded, so a decompression bomb costs a few KB to refuse."""
    with warnings.catch_warnings():
        # Our own pixel cap below is the rule; Pillow's warning would only be noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(stream)
        except Image.DecompressionBombError:
            raise _gigantic() from None
        except Exception:
            raise ImageRefused(NOT_AN_IMAGE, "not_an_image") from None
    check_format(img.format)
    check_pixels(img.width, img.height, max_pixels)
    return img


# --- the header checks, shared by the submit (from the file) and the upload page's
# preview (from what the browser measured), so both refuse with the same words ---------
NOT_AN_IMAGE = "This is not an image we can read. Upload a JPEG, PNG or WebP file."


def _gigantic() -> ImageRefused:
    return ImageRefused(
        "This file claims a gigantic size in its header (a 'decompression bomb') and was refused.",
        "decompression_bomb",
    )


def check_format(fmt: str | None) -> None:
    if fmt not in ACCEPTED_FORMATS:
        raise ImageRefused(
            f"{fmt or 'This'} images are not supported. Upload a JPEG, PNG or WebP file.",
            "unsupported_format",
        )


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageRefused(
            f"The image says it is {width}x{height} pixels, more than the "
            f"{max_pixels / 1e6:.0f} megapixels we accept (a possible decompression "
            "bomb), so it was not opened.",
            "decompression_bomb",
        )


def check_bytes(size_bytes: int) -> None:
    if size_bytes > settings.MAX_UPLOAD_BYTES:
        raise ImageRefused(
            f"The file is {human_bytes(size_bytes)}; the limit is "
            f"{human_bytes(settings.MAX_UPLOAD_BYTES)}.",
            "too_large",
        )
    if size_bytes == 0:
        raise ImageRefused("The file is empty.", "not_an_image")


def check_sides(width: int, height: int) -> None:
    side = settings.MIN_INPUT_SIDE
    if width < side or height < side:
        raise ImageRefused(
            f"The image is {width}x{height} pixels; it must be at least {side}x{side}.",
            "too_small",
        )


def check_measured(info: "ImageInfo") -> None:
    """Every check `inspect_upload` makes, in its order, on an image measured elsewhere
    (an empty format: a file the browser could not decode)."""
    check_bytes(info.size_bytes)
    if not info.format:
        raise ImageRefused(NOT_AN_IMAGE, "not_an_image")
    check_format(info.format)
    # Pillow itself refuses to open past twice its own limit, before our cap is asked.
    if Image.MAX_IMAGE_PIXELS and info.width * info.height > 2 * Image.MAX_IMAGE_PIXELS:
        raise _gigantic()
    check_pixels(info.width, info.height, settings.MAX_INPUT_PIXELS)
    check_sides(info.width, info.height)


def _decode(img: Image.Image) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img.load()
        except Exception:
            raise ImageRefused(
                "The file is truncated or damaged: its pixels could not be decoded.",
                "truncated",
            ) from None
    return img


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info


def inspect_upload(fileobj, size_bytes: int) -> ImageInfo:
    """An upload's size, format and dimensions from its header, against the limits every
    provider shares. No pixel is decoded here: `thumbnail()` does that, once the provider
    limits (judged from this header) have passed."""
    check_bytes(size_bytes)
    fileobj.seek(0)
    img = _open(fileobj, settings.MAX_INPUT_PIXELS)
    fileobj.seek(0)
    check_sides(img.width, img.height)
    return ImageInfo(img.format, img.width, img.height, _has_alpha(img), size_bytes)


def measure_result(data: bytes, max_pixels: int) -> ImageInfo:
    """A provider's result, measured from its header and checked to be whole, without
    decoding its pixels (a 16 MP result costs ~0.1 s of CPU to decode; the thumbnail is
    made later, when someone first looks): the format and pixel cap from the header, the
    chunks' checksums for PNG, the end-of-image marker for JPEG, the RIFF length for WebP."""
    img = _open(io.BytesIO(data), max_pixels)
    whole = True
    if img.format == "PNG":
        try:
            img.verify()  # walks every chunk and checks its CRC; decodes no pixel
        except Exception:
            whole = False
    elif img.format == "JPEG":
        whole = data.rstrip(b"\x00").endswith(b"\xff\xd9")
    elif img.format == "WEBP":
        whole = len(data) >= 8 and int.from_bytes(data[4:8], "little") + 8 <= len(data)
    if not whole:
        raise ImageRefused(
            "The file is truncated or damaged: its pixels could not be decoded.", "truncated"
        )
    return ImageInfo(img.format, img.width, img.height, _has_alpha(img), len(data))


def inspect_result(data: bytes, max_pixels: int) -> ImageInfo:
    """Decode and measure an image a provider gave back."""
    img = _decode(_open(io.BytesIO(data), max_pixels))
    return ImageInfo(img.format, img.width, img.height, _has_alpha(img), len(data))


def thumbnail(data_or_file) -> bytes:
    """A small WebP of the image. This is where an upload's pixels are decoded (JPEGs at
    a reduced scale), so a damaged file is refused here."""
    stream = io.BytesIO(data_or_file) if isinstance(data_or_file, bytes) else data_or_file
    img = _open(stream, settings.MAX_RESULT_PIXELS)
    img.draft("RGB", (THUMB_SIDE, THUMB_SIDE))  # JPEG decodes at 1/2..1/8 scale: less memory
    img = _decode(img)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        img = ImageOps.exif_transpose(img)
        img.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
    if img.mode not in ("RGB", "RGBA"):
        img = img.convert("RGBA" if _has_alpha(img) else "RGB")
    out = io.BytesIO()
    img.save(out, "WEBP", quality=80)
    return out.getvalue()


def encode(img: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    if fmt == "JPEG":
        img.convert("RGB").save(out, "JPEG", quality=92, optimize=True)
    elif fmt == "WEBP":
        img.save(out, "WEBP", quality=92)
    else:
        img.save(out, "PNG", optimize=False)
    return out.getvalue()


def resize(stream, size: tuple[int, int], fmt: str | None = None) -> tuple[bytes, str]:
    """Lanczos resize to `size`; keeps the input's format unless `fmt` says otherwise."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        img = Image.open(stream)
        fmt = fmt or img.format
        if img.mode not in ("RGB", "RGBA", "L", "LA"):
            img = img.convert("RGBA" if _has_alpha(img) else "RGB")
        big = img.resize(size, Image.Resampling.LANCZOS)
    return encode(big, fmt), fmt


def header_has_alpha(stream) -> bool:
    """Whether a stored image has transparency, from its header alone (no pixel decoded):
    PNG's colour type or tRNS chunk, WebP's alpha flag."""
    try:
        return _has_alpha(_open(stream, settings.MAX_RESULT_PIXELS))
    except ImageRefused:
        return False
