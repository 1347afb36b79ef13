"""Version 1 of every provider's price book, from shared/provider-docs/INDEX.md."""

import datetime

from django.db import migrations

# A copy, not an import: a migration must not change when the code does.
RULES = {
    "local": {"kind": "free"},
    "pixazo": {"kind": "brackets", "brackets": [
        [4000000, "0.07", "up to 4 MP"], [8000000, "0.12", "4-8 MP"],
        [16000000, "0.23", "8-16 MP"], [None, "0.45", "over 16 MP"]]},
    "pixelcut": {"kind": "flat", "price": "0.05", "verified": False},
    "fal": {"kind": "per_mp_ceil", "price": "0.016"},
    "ximilar": {"kind": "brackets", "verified": False, "by_option": "model_type",
                "default_option": "classic", "brackets": {
                    "classic": [[4000000, "0.02", "up to 4 MP"], [16000000, "0.04", "4-16 MP"],
                                [None, "0.08", "over 16 MP"]],
                    "gan": [[4000000, "0.04", "up to 4 MP"], [16000000, "0.08", "4-16 MP"],
                            [None, "0.16", "over 16 MP"]]}},
    "apixo": {"kind": "flat", "price": "0.01"},
}
NOTES = {
    "pixelcut": "Not published; assumed flat $0.05 until an admin confirms.",
    "ximilar": "Credits table not published; assumed brackets, GAN dearer.",
}


def ship(apps, schema_editor):
    PriceBook = apps.get_model("billing", "PriceBook")
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    for provider, rule in RULES.items():
        PriceBook.objects.get_or_create(
            provider=provider, version=1,
            defaults={"effective_from": start, "rule": rule,
                      "verified": rule.get("verified", True), "note": NOTES.get(provider, "")},
        )


class Migration(migrations.Migration):
    dependencies = [("billing", "0002_ledger_and_price_books")]
    operations = [migrations.RunPython(ship, migrations.RunPython.noop)]
