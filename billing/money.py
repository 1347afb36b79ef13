"""Money as text, in one place: every page, e-mail and event line formats amounts here.

People read dollars and cents: "$0.07", "$1,234.50". Amounts are kept to four places
(a tenth of a cent: some prices are $0.016 an image), and those places show only when
the amount has them: "$0.016", never "$0.0160". A price of nothing reads "free"; a
budget figure or a total of nothing reads "$0.00". Machines (the CSV export, the chart's
data) get `exact()`: four places, no "$", no separators, so a spreadsheet adds it up.
"""

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

PLACES = Decimal("0.0001")  # what the ledger keeps (DecimalField decimal_places=4)
CENTS = Decimal("0.01")
FREE = "free"


def _decimal(amount) -> Decimal | None:
    if amount is None or amount == "":
        return None
    try:
        # str() first: a float such as 0.1 would otherwise bring its binary noise along.
        value = amount if isinstance(amount, Decimal) else Decimal(str(amount))
    except (InvalidOperation, ValueError):
        return None
    return value.quantize(PLACES, rounding=ROUND_HALF_UP) if value.is_finite() else None


def usd(amount, *, zero: str = "$0.00") -> str:
    """Dollars as people read them: "$0.07", "$12.50", "$1,234.50", "$0.016", "-$0.02";
    `zero` for an amount of nothing ("free" for a price); "—" when there is no amount."""
    value = _decimal(amount)
    if value is None:
        return "—"
    if value == 0:
        return zero
    if value == value.quantize(CENTS):
        digits = f"{abs(value):,.2f}"
    else:
        # Sub-cent places only where they exist: 0.0160 -> 0.016, 0.3725 -> 0.3725.
        digits = f"{abs(value):,.4f}".rstrip("0")
    return f"-${digits}" if value < 0 else f"${digits}"


def price(amount) -> str:
    """What a job costs (a quote, a charge): "free" when it costs nothing."""
    return usd(amount, zero=FREE)


def exact(amount) -> str:
    """For machines: "0.0160", "-0.0200" (four places, what the ledger holds)."""
    value = _decimal(amount)
    return "" if value is None else f"{value:.4f}"
