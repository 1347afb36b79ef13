"""What fits the budget: the chosen images priced with every provider at each value of its
main option (scale or resolution; the other options as their panels show them), against
what is left of the team's budget this month.

The prices come from the quote's own `Pricer` (jobs/quotes.py), the same books and rules
the preview, the hold and the charge use. Sandbox providers are not billed: their sets
are kept apart, as what they would cost with a real account.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import urlencode

from billing.money import price, usd
from jobs.providers import Provider, Refusal, all_providers

ZERO = Decimal("0.0000")
SIZE_OPTIONS = ("scale", "resolution")
OVER_SHOWN = 2  # the nearest sets that do not fit, named in the sentence


@dataclass(frozen=True)
class FitSet:
    """One provider at one value of its main option, for all the images."""

    provider: Provider
    options: dict  # every option of the provider, as the submit would take them
    main: str  # the option that varies ("scale", "resolution")
    label: str  # its value as the form shows it ("2x", "4k")
    rank: int  # order of the value (bigger results later)
    amount: Decimal  # all the images together
    left: Decimal | None  # what is left of the budget (None: no budget)
    verified: bool = True

    @property
    def name(self) -> str:
        return f"{self.provider.name} {self.label}"

    @property
    def sandbox(self) -> bool:
        return self.provider.is_sandbox

    @property
    def fits(self) -> bool:
        return self.left is None or self.amount <= self.left

    @property
    def over_by(self) -> Decimal:
        return ZERO if self.fits else self.amount - self.left

    @property
    def options_label(self) -> str:
        return self.provider.describe(self.options)

    @property
    def query(self) -> str:
        """The set for the upload page's "use it" button (jobs.views.fit_apply)."""
        pairs = [("set", self.provider.slug), *((f"set-{k}", v) for k, v in self.options.items())]
        return urlencode(pairs)

    def fit_words(self) -> str:
        return f"{self.name} ({price(self.amount)})"

    def over_words(self) -> str:
        return f"{self.name} needs {usd(self.amount)}, {usd(self.over_by)} over"


@dataclass
class Fit:
    count: int  # images priced
    team: str
    budget: Decimal | None  # the team's monthly budget (None: no budget, nothing to plan)
    left: Decimal | None
    sets: list[FitSet] = field(default_factory=list)  # every set every image can take
    unusable: list[str] = field(default_factory=list)  # sets some image cannot take

    @property
    def no_budget(self) -> bool:
        return self.budget is None

    def _part(self, sandbox: bool) -> list[FitSet]:
        return [s for s in self.sets if s.sandbox == sandbox]

    @property
    def fits(self) -> list[FitSet]:
        """Real sets that fit, cheapest first (then the bigger result first)."""
        return sorted(
            (s for s in self._part(False) if s.fits), key=lambda s: (s.amount, -s.rank, s.name)
        )

    @property
    def over(self) -> list[FitSet]:
        """Real sets that do not fit, nearest first."""
        return sorted(
            (s for s in self._part(False) if not s.fits), key=lambda s: (s.amount, s.name)
        )

    @property
    def sandbox_fits(self) -> list[FitSet]:
        return sorted(
            (s for s in self._part(True) if s.fits), key=lambda s: (s.amount, -s.rank, s.name)
        )

    @property
    def sandbox_over(self) -> list[FitSet]:
        return sorted((s for s in self._part(True) if not s.fits), key=lambda s: (s.amount, s.name))

    @property
    def sentence(self) -> str:
        """ "All 40 images fit at APIXO 4k ($0.40) or Pixazo 2x ($2.80); Pixazo 4x needs
        $4.60, $1.10 over." for the billed providers."""
        if self.no_budget:
            return f"{self.team} has no monthly budget: nothing to plan against."
        return _sentence(self._part(False), self.count, self.left)

    @property
    def sandbox_sentence(self) -> str:
        """The same for the sandbox providers, at the prices a real account would pay."""
        if self.no_budget or not self._part(True):
            return ""
        said = _sentence(self._part(True), self.count, self.left)
        return f"Sandbox, not billed: at real prices, {said[0].lower()}{said[1:]}"


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _sentence(sets: list[FitSet], count: int, left: Decimal) -> str:
    """Per provider, the biggest result that fits, and the next one up that does not."""
    if not sets:
        return "No provider can take these images."
    best, nearest = {}, {}
    for s in sets:
        slug = s.provider.slug
        if s.fits:
            if slug not in best or s.rank > best[slug].rank:
                best[slug] = s
        elif slug not in nearest or s.amount < nearest[slug].amount:
            nearest[slug] = s
    fitting = sorted(best.values(), key=lambda s: (s.amount, s.name))
    over = sorted(nearest.values(), key=lambda s: (s.over_by, s.name))[:OVER_SHOWN]
    subject = "The image fits" if count == 1 else f"All {count} images fit"
    if fitting:
        said = f"{subject} at {_join([s.fit_words() for s in fitting])}"
    else:
        said = f"Nothing fits the {usd(left)} left"
    if over:
        said += "; " + "; ".join(s.over_words() for s in over)
    elif fitting:
        said += ": every option fits"
    return said + "."


def main_option(provider: Provider):
    for opt in provider.options:
        if opt.name in SIZE_OPTIONS:
            return opt
    return provider.options[0] if provider.options else None


def values_of(opt) -> list[tuple[object, str]]:
    """(value, label) of each value worth listing: every choice, or a free number's
    suggested values within its limits."""
    if opt.is_choice:
        return [(value, str(label)) for value, label in opt.choices]
    values = [v for v in opt.suggestions if opt.minimum <= v <= opt.maximum]
    return [(opt.number_type(v), f"{v:g}x" if opt.name == "scale" else f"{v:g}") for v in values]


def plan(pricer, infos, raw_options: Mapping[str, Mapping], team, usage=None) -> Fit | None:
    """infos: [(name, ImageInfo)] as measured (accepted ones); raw_options: every
    provider's panel values (slug -> raw); usage: billing.ledger.Usage of the team, as the
    preview's budget check read it (None: the team has no budget). None when there is
    nothing to plan for (no images or no team)."""
    if not infos or team is None:
        return None
    budget = usage.budget if usage is not None else None
    left = None if budget is None else max(usage.left, ZERO)
    result = Fit(len(infos), team.name, budget, left)
    if budget is None:
        return result
    for provider in all_providers():
        if not provider.available:
            continue
        try:
            current = provider.clean_options(raw_options.get(provider.slug, {}))
        except Refusal:
            current = provider.clean_options({})  # a bad panel value: its defaults
        opt = main_option(provider)
        if opt is None:
            continue
        for rank, (value, label) in enumerate(values_of(opt)):
            options = {**current, opt.name: value}
            amount, verified = _total(pricer, provider, infos, options)
            if amount is None:
                result.unusable.append(f"{provider.name} {label}")
                continue
            result.sets.append(
                FitSet(provider, options, opt.name, label, rank, amount, left, verified)
            )
    return result


def _total(pricer, provider, infos, options) -> tuple[Decimal | None, bool]:
    """All the images at these options, or None if the provider refuses one of them."""
    amount, verified = ZERO, True
    for _name, info in infos:
        try:
            _size, quote = pricer.price(provider, info, options)
        except Refusal:
            return None, True
        amount += quote.amount
        verified = verified and quote.verified
    return amount, verified
