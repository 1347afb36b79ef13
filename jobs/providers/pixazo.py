"""Pixazo Crystal Upscaler (doc 000): async JSON, webhook, Replicate-style predictions."""

from jobs.providers.base import HttpProvider, Option

SCALES = (2, 4, 6, 8)
# Polling is not documented for this model; Pixazo's other async models answer here.
# Kept in one place so it can be corrected (INDEX.md, "Pixazo").
STATUS_PATH = "/v2/requests/status/{id}"
GENERATE_PATH = "/upscaler/v1/crystal-upscaler/generate"


class PixazoProvider(HttpProvider):
    slug = "pixazo"
    name = "Pixazo Crystal"
    summary = "Crystal Upscaler (philz1337x) via Pixazo. Priced by output megapixels."
    default_base_url = "https://gateway.pixazo.ai"
    supports_webhook = True
    options = (Option("scale", "Scale", default=2, choices=tuple((s, f"{s}x") for s in SCALES)),)

    def output_size(self, image, options):
        return image.width * options["scale"], image.height * options["scale"]
