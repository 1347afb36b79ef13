"""Real image files made on the fly for tests."""

import io
import secrets
import struct
import zlib

from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image


def image_bytes(width=96, height=80, fmt="PNG", mode="RGB", unique=False) -> bytes:
    """A gradient image. The same arguments make the same bytes, so the portal reuses the
    result of an earlier job for it (jobs/reuse.py); `unique=True` marks its first row
    with random pixels, for a test that needs its jobs really run."""
    img = Image.new(mode, (width, height))
    # A gradient, so resampling has something to work on and files differ.
    px = img.load()
    for x in range(width):
        for y in range(height):
            value = (x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), 128)
            px[x, y] = value + (200,) if mode == "RGBA" else value[: len(mode)]
    if unique:
        for x, value in enumerate(secrets.token_bytes(min(width, 16))):
            px[x, 0] = (value,) * len(mode)
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()


def upload(name="photo.png", data=None, content_type="image/png", **kwargs) -> SimpleUploadedFile:
    return SimpleUploadedFile(
        name, data if data is not None else image_bytes(**kwargs), content_type=content_type
    )


def png_bomb(width=100_000, height=100_000) -> bytes:
    """A few hundred bytes whose PNG header claims width x height pixels."""

    def chunk(kind, body):
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def png_zip_bomb(width: int, height: int) -> bytes:
    """A complete, valid black RGB PNG of width x height that compresses to almost
    nothing: megabytes of pixels in kilobytes of file. Made row by row, so building it
    never holds the pixels in memory."""

    def chunk(kind, body):
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    packer = zlib.compressobj(9)
    row = b"\x00" * (1 + width * 3)  # filter byte + RGB
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
