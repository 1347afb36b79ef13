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


def current_all(at=None) -> dict[str, PriceBook]:
    """Every provider's current book in one query (pages that price many things)."""
    at = at or timezone.now()
    found = {}
    rows = PriceBook.objects.filter(effective_from__lte=at).order_by(
        "provider", "-effective_from", "-version"
    )
    for book in rows:
        found.setdefault(book.provider, book)
    return found


def quote_under(
    book: PriceBook | None, provider: str, name: str, width: int, height: int, options=None
) -> Quote:
    """The price under a given book (None: the shipped rules). An unverified book makes
    every quote under it "assumed"."""
    rule = book.rule if book else RULES[provider]
    result = price(rule, name, width, height, options)
    if book and not book.verified and result.verified:
        result = Quote(result.amount, result.tier, result.explanation, verified=False)
    return result


def quote(
    provider: str, name: str, width: int, height: int, options=None, at=None
) -> tuple[Quote, PriceBook | None]:
    book = current(provider, at)
    return quote_under(book, provider, name, width, height, options), book
