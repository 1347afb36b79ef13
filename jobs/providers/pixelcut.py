"""Pixelcut Upscale (doc 001): synchronous; the file goes as multipart."""

from jobs.providers.base import HttpProvider, Option, Refusal

MAX_INPUT_BYTES = 25 * 1024 * 1024
MIN_SIDE = 64
MAX_INPUT_SIDE = {2: 3000, 4: 1500}  # per scale, from the document
MAX_OUTPUT_SIDE = 6000


class PixelcutProvider(HttpProvider):
    slug = "pixelcut"
    name = "Pixelcut"
    summary = "Pixelcut Upscale: 2x or 4x, answered at once. JPEG out (PNG with alpha)."
    default_base_url = "https://api.developer.pixelcut.ai"
    options = (Option("scale", "Scale", default=2, choices=((2, "2x"), (4, "4x"))),)

    def output_size(self, image, options):
        return image.width * options["scale"], image.height * options["scale"]

    def check(self, image, options):
        scale = options["scale"]
        side = MAX_INPUT_SIDE[scale]
        if image.size_bytes > MAX_INPUT_BYTES:
            raise Refusal("Pixelcut takes files up to 25 MB.", "file_size_too_large")
        if image.width < MIN_SIDE or image.height < MIN_SIDE:
            raise Refusal("Pixelcut needs at least 64x64 pixels.", "resolution_too_low")
        if image.width > side or image.height > side:
            raise Refusal(
                f"Pixelcut takes at most {side}x{side} pixels at {scale}x; this image is "
                f"{image.width}x{image.height}."
                + (" Try 2x, which takes up to 3000x3000." if scale == 4 else ""),
                "resolution_too_high",
            )
        width, height = self.output_size(image, options)
        if width > MAX_OUTPUT_SIDE or height > MAX_OUTPUT_SIDE:
            raise Refusal(
                f"Pixelcut's results are at most {MAX_OUTPUT_SIDE}x{MAX_OUTPUT_SIDE}; "
                f"{scale}x would make {width}x{height}.",
                "resolution_too_high",
            )
