"""Pricing as pure functions over rules kept as data.

The rules below are the published (or, where marked, assumed) prices from
shared/provider-docs/INDEX.md. A price is always computed from an output size, so the
same function gives the quote (predicted size) and the charge (actual size).
"""

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from billing.money import usd

CENT = Decimal("0.0001")
MP = 1_000_000


@dataclass(frozen=True)
class Quote:
    amount: Decimal
    tier: str
    explanation: str
    verified: bool = True


# Rules as data. kind: free | flat | brackets | per_mp_ceil. Bracket upper bounds are
# inclusive, in pixels; None is "and above".
RULES = {
    "local": {"kind": "free"},
    "pixazo": {
        "kind": "brackets",
        "brackets": [
            (4 * MP, "0.07", "up to 4 MP"),
            (8 * MP, "0.12", "4-8 MP"),
            (16 * MP, "0.23", "8-16 MP"),
            (None, "0.45", "over 16 MP"),
        ],
    },
    "pixelcut": {"kind": "flat", "price": "0.05", "verified": False},
    "fal": {"kind": "per_mp_ceil", "price": "0.016"},
    # Ximilar publishes credits, not prices: assumed brackets, GAN dearer than classic.
    "ximilar": {
        "kind": "brackets",
        "verified": False,
        "by_option": "model_type",
        "brackets": {
            "classic": [
                (4 * MP, "0.02", "up to 4 MP"),
                (16 * MP, "0.04", "4-16 MP"),
                (None, "0.08", "over 16 MP"),
            ],
            "gan": [
                (4 * MP, "0.04", "up to 4 MP"),
                (16 * MP, "0.08", "4-16 MP"),
                (None, "0.16", "over 16 MP"),
            ],
        },
    },
    "apixo": {"kind": "flat", "price": "0.01"},
}


def money(value) -> Decimal:
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def price(rule: dict, name: str, width: int, height: int, options=None) -> Quote:
    """The price of one output of width x height under a rule (see RULES)."""
    pixels = width * height
    mp = pixels / MP
    size = f"{width}x{height} output = {mp:.2f} MP"
    verified = rule.get("verified", True)
    kind = rule["kind"]
    if kind == "free":
        return Quote(money(0), "free", f"{name} is free.")
    if kind == "flat":
        amount = money(rule["price"])
        return Quote(amount, "per image", f"{name}: {usd(amount)} per image, any size.", verified)
    if kind == "per_mp_ceil":
        whole = max(1, math.ceil(pixels / MP))
        unit = Decimal(rule["price"])
        amount = money(unit * whole)
        return Quote(
            amount,
            f"{whole} MP",
            f"{size}, billed as {whole} MP x {usd(unit)}: {usd(amount)}",
            verified,
        )
    brackets = rule["brackets"]
    if "by_option" in rule:
        choice = (options or {}).get(rule["by_option"]) or rule.get("default_option", "classic")
        brackets = brackets[choice]
    for upper, amount, label in brackets:
        if upper is None or pixels <= upper:
            amount = money(amount)
            return Quote(amount, label, f"{size}: {name} {label} bracket, {usd(amount)}", verified)
    raise AssertionError("brackets end with an open one")


def quote(provider: str, name: str, width: int, height: int, options=None, rules=None) -> Quote:
    """Price under the shipped rules (tests, and the fallback when no book exists)."""
    return price((rules or RULES)[provider], name, width, height, options)


def describe(rule: dict) -> str:
    """A rule in words, for the job page and the admin: "By output size: up to 4 MP
    $0.07; 4-8 MP $0.12; ..."."""
    kind = rule["kind"]
    if kind == "free":
        return "Free."
    if kind == "flat":
        return f"${rule['price']} per image, any size."
    if kind == "per_mp_ceil":
        return f"${rule['price']} per output megapixel, rounded up to whole megapixels."

    def steps(brackets):
        return "; ".join(f"{label} ${amount}" for _upper, amount, label in brackets)

    if "by_option" in rule:
        models = " | ".join(f"{key}: {steps(b)}" for key, b in rule["brackets"].items())
        return f"By output size and {rule['by_option']}: {models}."
    return f"By output size: {steps(rule['brackets'])}."
