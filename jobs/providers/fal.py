"""fal.ai clarityai/crystal-upscaler (doc 002), through fal's queue."""

from jobs.providers.base import HttpProvider, Option, Refusal

MODEL = "clarityai/crystal-upscaler"
MAX_OUTPUT_PIXELS = 100_000_000  # INDEX.md: output capped at 100 MP
MAX_OUTPUT_SIDE = 65535


class FalProvider(HttpProvider):
    slug = "fal"
    name = "fal.ai Crystal"
    summary = "clarityai/crystal-upscaler on fal.ai: any scale 1-200, optional creativity."
    default_base_url = "https://queue.fal.run"
    supports_webhook = True
    supports_cancel = True
    options = (
        Option(
            "scale",
            "Scale factor",
            default=2.0,
            minimum=1,
            maximum=200,
            number_type=float,
            suggestions=(1.5, 2, 3, 4, 6, 8),
            help="1 to 200",
        ),
        Option(
            "creativity",
            "Creativity",
            default=0.0,
            minimum=0,
            maximum=10,
            number_type=float,
            suggestions=(0, 2, 5, 10),
            help="0 (faithful) to 10",
        ),
    )

    def output_size(self, image, options):
        scale = float(options["scale"])
        return round(image.width * scale), round(image.height * scale)

    def check(self, image, options):
        width, height = self.output_size(image, options)
        if width * height > MAX_OUTPUT_PIXELS or max(width, height) > MAX_OUTPUT_SIDE:
            raise Refusal(
                f"At {options['scale']:g}x the result would be {width}x{height} "
                f"({width * height / 1e6:.1f} MP); fal's limit is 100 MP and 65535 pixels a "
                "side. Pick a smaller scale factor.",
                "output_too_large",
            )
