"""`local`: Lanczos upscaling with Pillow on our own worker. Free, no account needed."""

from django.conf import settings

from jobs import imaging
from jobs.providers.base import Finished, Option, Provider, Refusal


class LocalProvider(Provider):
    slug = "local"
    name = "Local (Pillow)"
    summary = (
        "Free and quick, done on our own server: enlarges smoothly but adds no new "
        "detail. Fine for a first look."
    )
    runs_on_worker = True
    options = (Option("scale", "Scale", default=2, choices=((2, "2x"), (3, "3x"), (4, "4x"))),)

    def output_size(self, image, options):
        scale = options["scale"]
        return image.width * scale, image.height * scale

    def check(self, image, options):
        width, height = self.output_size(image, options)
        cap = settings.LOCAL_MAX_OUTPUT_PIXELS
        if width * height > cap:
            raise Refusal(
                f"At {options['scale']}x the result would be {width}x{height} "
                f"({width * height / 1e6:.1f} MP), over the local upscaler's limit of "
                f"{cap / 1e6:g} MP. Pick a smaller scale or a smaller image.",
                "output_too_large",
            )

    async def submit(self, job, http):
        size = (job.input_width * job.options["scale"], job.input_height * job.options["scale"])
        with job.input_file.open("rb") as stream:
            data, _fmt = imaging.resize(stream, size)
        return Finished(content=data)
