"""Static files in production: whitenoise's compressed manifest storage (hashed names that
browsers may cache for ever, gzip and brotli copies), written by `collectstatic`."""

from whitenoise.storage import CompressedManifestStaticFilesStorage


def _without_source_maps(patterns):
    return tuple(
        (glob, tuple(p for p in rules if "sourceMappingURL" not in str(p)))
        for glob, rules in patterns
    )


class StaticFilesStorage(CompressedManifestStaticFilesStorage):
    """The vendored libraries (Chart.js, img-comparison-slider) are kept byte for byte as
    their packages ship them (see their SOURCE.txt), ending with a `sourceMappingURL`
    comment that names a .map file we do not vendor. Django's manifest storage rewrites
    such references to hashed names and refuses to collect when the target is missing.
    A source map is only a debugging aid that a browser fetches when its developer tools
    are open, so those comments are left as they are; every other reference (CSS `url()`
    and `@import`) is still rewritten and checked."""

    patterns = _without_source_maps(CompressedManifestStaticFilesStorage.patterns)
