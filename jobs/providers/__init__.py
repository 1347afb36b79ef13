"""The provider registry: slug -> class. Forms, model choices and the CLI derive from it."""

from jobs.providers.apixo import ApixoProvider
from jobs.providers.base import (  # noqa: F401
    Failed,
    Finished,
    Option,
    Provider,
    ProviderError,
    Refusal,
    Result,
    Running,
)
from jobs.providers.fal import FalProvider
from jobs.providers.local import LocalProvider
from jobs.providers.pixazo import PixazoProvider
from jobs.providers.pixelcut import PixelcutProvider
from jobs.providers.ximilar import XimilarProvider

PROVIDER_CLASSES = {
    cls.slug: cls
    for cls in (
        LocalProvider,
        PixazoProvider,
        PixelcutProvider,
        FalProvider,
        XimilarProvider,
        ApixoProvider,
    )
}


def get_provider(slug: str) -> Provider:
    return PROVIDER_CLASSES[slug]()


def all_providers() -> list[Provider]:
    return [cls() for cls in PROVIDER_CLASSES.values()]


def provider_choices() -> list[tuple[str, str]]:
    return [(slug, cls.name) for slug, cls in PROVIDER_CLASSES.items()]
