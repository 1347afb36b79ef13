"""Which price book applies, and quotes under it."""

from django.utils import timezone

from billing.models import PriceBook
from billing.pricing import RULES, Quote, price


def current(provider: str, at=None) -> PriceBook | None:
    at = at or timezone.now()
    return (
        PriceBook.objects.filter(provider=provider, effective_from__lte=at)
        .order_by("-effective_from", "-version")
        .first()
    )


def quote(
    provider: str, name: str, width: int, height: int, options=None, at=None
) -> tuple[Quote, PriceBook | None]:
    book = current(provider, at)
    rule = book.rule if book else RULES[provider]
    result = price(rule, name, width, height, options)
    if book and not book.verified and result.verified:
        result = Quote(result.amount, result.tier, result.explanation, verified=False)
    return result, book
