"""Ximilar Upscaler (doc 003): async request, polled at /v2/request/{id} or webhook."""

from jobs.providers.base import HttpProvider, Option

ENDPOINTS = {2: "upscale_2x", 4: "upscale_4x", 8: "upscale_8x"}


class XimilarProvider(HttpProvider):
    slug = "ximilar"
    name = "Ximilar"
    summary = "Ximilar Upscaler: 2x, 4x or 8x; classic or GAN model."
    default_base_url = "https://api.ximilar.com"
    supports_webhook = True
    options = (
        Option("scale", "Scale", default=2, choices=((2, "2x"), (4, "4x"), (8, "8x"))),
        Option(
            "mode",
            "Mode",
            default="artifact_removal",
            choices=(
                ("artifact_removal", "Artifact removal"),
                ("ironed_out", "Ironed out (smoother)"),
                ("high_fidelity", "High fidelity"),
            ),
        ),
        Option(
            "model_type",
            "Model",
            default="classic",
            choices=(("classic", "Classic"), ("gan", "GAN (more detail, dearer)")),
        ),
        Option(
            "output_format",
            "Format",
            default="auto",
            choices=(("auto", "Same as input"), ("jpg", "JPEG"), ("png", "PNG"), ("webp", "WebP")),
        ),
    )

    def output_size(self, image, options):
        return image.width * options["scale"], image.height * options["scale"]
