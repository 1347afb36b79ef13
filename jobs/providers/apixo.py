"""APIXO Image Upscaler (doc 004): async task, statusTask polling or callback."""

from jobs.providers.base import HttpProvider, Option

# Assumption (the document does not say): a tier is the output's long edge, aspect kept.
LONG_EDGE = {"2k": 2048, "4k": 4096, "8k": 8192}


class ApixoProvider(HttpProvider):
    slug = "apixo"
    name = "APIXO"
    summary = "APIXO Image Upscaler: to a 2k, 4k or 8k long edge. Flat price per image."
    default_base_url = "https://api.apixo.ai/api/v1"
    supports_webhook = True
    options = (
        Option(
            "resolution",
            "Resolution",
            default="4k",
            choices=(("2k", "2k"), ("4k", "4k"), ("8k", "8k")),
        ),
        Option(
            "output_format",
            "Format",
            default="jpg",
            choices=(("jpg", "JPEG"), ("png", "PNG"), ("webp", "WebP")),
        ),
    )

    def output_size(self, image, options):
        edge = LONG_EDGE[options["resolution"]]
        if image.width >= image.height:
            return edge, max(1, round(image.height * edge / image.width))
        return max(1, round(image.width * edge / image.height)), edge
