import math

from django import template

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
    """Dollars as people read them: "$0.12", and four places only when cents hide some
    of it ("$0.0160")."""
    from decimal import Decimal

    if amount is None:
        return "—"
    amount = Decimal(amount)
    if amount == amount.quantize(Decimal("0.01")):
        return f"${amount:.2f}"
    return f"${amount:.4f}"


@register.filter
def money(amount):
    """Budget figures, always to the cent: "$8.00"."""
    return "—" if amount is None else f"${amount:.2f}"
