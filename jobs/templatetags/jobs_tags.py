import math

from django import template

from billing import money as money_text
from jobs.imaging import human_bytes

register = template.Library()


@register.filter
def duration(value):
    """A timedelta as people say it: "4.2 s", "3 min 05 s", "1 h 02 min"."""
    if value is None:
        return "—"
    seconds = value.total_seconds()
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@register.filter
def minutes(value) -> int:
    """A timedelta in whole minutes, rounded up: how long someone has to wait."""
    return math.ceil(value.total_seconds() / 60) if value is not None else 0


@register.filter
def filesize(value):
    return "—" if value is None else human_bytes(value)


@register.filter
def same(a, b) -> bool:
    """Compare an option's value with a choice whatever their types (2 == "2")."""
    return str(a) == str(b)


@register.filter
def usd(amount):
    """A price (a quote, a charge): "$0.07", "$0.016", "free" for nothing (billing/money.py)."""
    return money_text.price(amount)


@register.filter
def money(amount):
    """A figure (a budget, a total, what is left): "$8.00", "$0.00" for nothing."""
    return money_text.usd(amount)


@register.filter
def provider_name(slug):
    """A provider's display name ("Pixazo Crystal") for its slug; the slug if unknown."""
    from jobs.providers import PROVIDER_CLASSES

    cls = PROVIDER_CLASSES.get(slug)
    return cls.name if cls else slug
