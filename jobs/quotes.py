"""The upload page's quote, before anything is sent.

For each image and chosen provider: the predicted size, the price, its tier and why (the
price book's own explanation), and a hint when a smaller option of the same provider
lands in a cheaper tier. Then the same images priced with every provider, and how the
submission sits against the team's monthly budget. Plain functions over the provider
registry and the price books; the view only hands the form in.

Prices come from the price books in force (one query for all of them), the same books
the submission's quote and the charge use, so the preview says what the job will store.
"""

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from billing import books, ledger
from billing.models import LedgerEntry, PriceBook
from billing.pricing import RULES, Quote, describe
from jobs import fit as fit_plan
from jobs import reuse as reuses
from jobs.imaging import ImageInfo
from jobs.intake import check_limits, measured_refusal
from jobs.providers import Provider, Refusal, all_providers, get_provider

ZERO = Decimal("0.0000")


class Pricer:
    """Quotes under the books in force now, fetched once for a whole page."""

    def __init__(self, at=None):
        self.books = books.current_all(at)

    def book(self, slug: str):
        return self.books.get(slug)

    def is_brackets(self, slug: str) -> bool:
        book = self.book(slug)
        rule = book.rule if book else RULES[slug]
        return rule["kind"] == "brackets"

    def price(self, provider: Provider, info: ImageInfo, options) -> tuple[tuple[int, int], Quote]:
        """(output size, quote); Refusal when the provider (or the portal) cannot take it."""
        check_limits(provider, info, options)
        width, height = provider.output_size(info, options)
        book = self.book(provider.slug)
        return (width, height), books.quote_under(
            book, provider.slug, provider.name, width, height, options
        )


@dataclass(frozen=True)
class Hint:
    """A smaller choice of the same provider that lands in a cheaper tier."""

    label: str  # the choice as the form shows it, e.g. "2x"
    size: tuple[int, int]
    quote: Quote
    bracket: bool  # the tier is a bracket ("up to 4 MP bracket")

    @property
    def tier(self) -> str:
        return f"{self.quote.tier} bracket" if self.bracket else self.quote.tier


@dataclass
class Line:
    """One image with one chosen provider (or the provider's refusal of its options)."""

    provider: Provider
    name: str = ""
    info: ImageInfo | None = None
    options: dict = field(default_factory=dict)
    label: str = ""
    size: tuple[int, int] | None = None
    quote: Quote | None = None
    hint: Hint | None = None
    error: str = ""
    warning: str = ""  # accepted, but the result will lose something (transparency)
    max_scale: float | None = None  # the largest free-number scale this image allows
    # Done before (jobs/reuse.py): the earlier job whose result this line reuses for free,
    # unless `fresh` ("run again", ticked on the page) asks for a new run at full price.
    reuse: "reuses.Reuse | None" = None
    fresh: bool = False

    @property
    def key(self) -> str:
        """The form's name for this line's "run again" box (reuse.line_key)."""
        return reuses.line_key(self.provider.slug, self.info.sha256 if self.info else "")

    @property
    def reused(self) -> bool:
        return self.reuse is not None and not self.fresh

    @property
    def amount(self) -> Decimal:
        """What the submission will hold for this line: nothing when it reuses a result."""
        return ZERO if self.reused else self.quote.amount


@dataclass(frozen=True)
class FileRefusal:
    """An image the submit would refuse whichever provider is chosen, and why."""

    name: str
    info: ImageInfo
    message: str


@dataclass
class ProviderTotal:
    """All the images with one provider, at its current options (defaults if unset)."""

    provider: Provider
    chosen: bool
    label: str = ""
    amount: Decimal | None = None  # None: nothing priced (bad options or all refused)
    priced: int = 0
    refused: list[str] = field(default_factory=list)  # image names the provider refuses
    verified: bool = True
    error: str = ""


@dataclass(frozen=True)
class BudgetCheck:
    usage: ledger.Usage
    wanted: Decimal  # real spend of this submission: what the budget check counts
    would_be: Decimal  # sandbox jobs' would-be cost: not counted

    @property
    def over(self) -> bool:
        """The server would refuse this submission (the same sum as ledger.check)."""
        use = self.usage
        return self.wanted > 0 and use.spent + use.held + self.wanted > use.budget

    @property
    def over_if_real(self) -> bool:
        """Not refused only because sandbox jobs are not charged."""
        use = self.usage
        total = self.wanted + self.would_be
        return not self.over and self.would_be > 0 and use.spent + use.held + total > use.budget

    @property
    def left(self) -> Decimal:
        return max(self.usage.left, ZERO)


@dataclass
class Preview:
    images: list
    lines: list[Line]
    totals: list[ProviderTotal]
    budget: BudgetCheck | None
    file_refusals: list[FileRefusal] = field(default_factory=list)
    # What fits what is left of the budget (jobs/fit.py); None before images are chosen.
    fit: "fit_plan.Fit | None" = None

    @property
    def priced(self) -> list[Line]:
        return [line for line in self.lines if line.quote]

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.priced), ZERO)

    @property
    def sandbox_total(self) -> Decimal:
        return sum((ln.amount for ln in self.priced if ln.provider.is_sandbox), ZERO)

    @property
    def real_total(self) -> Decimal:
        return self.total - self.sandbox_total

    @property
    def assumed(self) -> bool:
        return any(not line.quote.verified for line in self.priced)

    @property
    def refused(self) -> bool:
        return bool(self.file_refusals) or any(line.error for line in self.lines)

    @property
    def has_sandbox(self) -> bool:
        return any(line.provider.is_sandbox for line in self.priced)

    @property
    def has_real(self) -> bool:
        return any(not line.provider.is_sandbox for line in self.priced)

    @property
    def blocked(self) -> str:
        """Why the submit button is off ("" when it is on): the same things the submit
        would refuse, so nobody presses it for a refusal."""
        if not self.images:
            return "Add images first."
        if self.refused:
            return "Fix the refused lines first."
        if not self.lines:
            return "Pick a provider."
        if self.budget and self.budget.over:
            return "Over what is left of the budget."
        return ""


def cheaper_choice(pricer: Pricer, provider: Provider, info, options, quote) -> Hint | None:
    """The best smaller choice that costs less: re-price each other value of every choice
    option that changes the output size, keep those with a smaller output and a lower
    price, and offer the largest of them (the least detail given up for the saving)."""
    width, height = provider.output_size(info, options)
    best = None
    for opt in provider.options:
        if not opt.is_choice:
            continue
        for value, label in opt.choices:
            if value == options.get(opt.name):
                continue
            try:
                size, alt = pricer.price(provider, info, {**options, opt.name: value})
            except Refusal:
                continue
            if size[0] * size[1] >= width * height or alt.amount >= quote.amount:
                continue
            key = (size[0] * size[1], -alt.amount)
            if best is None or key > best[0]:
                best = (key, Hint(label, size, alt, pricer.is_brackets(provider.slug)))
    return best[1] if best else None


def chosen_lines(pricer: Pricer, choices, infos) -> list[Line]:
    lines = []
    for slug, raw in choices:
        try:
            provider = get_provider(slug)
        except KeyError:
            continue
        if not provider.available:
            lines.append(Line(provider, error=provider.unavailable_reason))
            continue
        try:
            options = provider.clean_options(raw)
        except Refusal as refusal:
            lines.append(Line(provider, error=refusal.message))
            continue
        for name, info in infos:
            line = Line(provider, name, info, options, provider.describe(options))
            line.max_scale = largest_scale(provider, info, options)
            try:
                line.size, line.quote = pricer.price(provider, info, options)
            except Refusal as refusal:
                line.error = refusal.message
            else:
                line.hint = cheaper_choice(pricer, provider, info, options, line.quote)
                line.warning = transparency_warning(provider, name, info, options)
            lines.append(line)
    return lines


def transparency_warning(provider: Provider, name: str, info: ImageInfo, options) -> str:
    fmt = provider.drops_transparency(options) if info.has_alpha else ""
    if not fmt:
        return ""
    return (
        f"{fmt} has no transparency: the transparent parts of {name} will turn black. "
        "Pick PNG or 'Keep transparency'."
    )


def largest_scale(provider: Provider, info: ImageInfo, options) -> float | None:
    """For a provider whose scale is a free number: the largest, to a tenth, that this
    image allows under the provider's limits and ours (the submit's own checks)."""
    opt = next((o for o in provider.options if o.name == "scale" and not o.is_choice), None)
    if opt is None:
        return None

    def fits(tenths: int) -> bool:
        try:
            check_limits(provider, info, {**options, "scale": opt.number_type(tenths / 10)})
        except Refusal:
            return False
        return True

    low, high = round(opt.minimum * 10), round(opt.maximum * 10)
    if not fits(low):
        return None
    if fits(high):
        return high / 10
    while high - low > 1:  # the limits grow with the scale: bisect to the last that fits
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low / 10


def provider_totals(
    pricer: Pricer, raw_options: Mapping[str, Mapping], chosen: set[str], infos
) -> list[ProviderTotal]:
    """Every provider, all the images, each at the options its panel shows now."""
    totals = []
    for provider in all_providers():
        row = ProviderTotal(provider, provider.slug in chosen)
        totals.append(row)
        if not provider.available:  # not offered as an alternative either
            row.error = provider.unavailable_reason
            continue
        try:
            options = provider.clean_options(raw_options.get(provider.slug, {}))
        except Refusal as refusal:
            row.error = refusal.message
            continue
        row.label = provider.describe(options)
        for name, info in infos:
            try:
                _size, quote = pricer.price(provider, info, options)
            except Refusal:
                row.refused.append(name)
                continue
            row.amount = (row.amount or ZERO) + quote.amount
            row.priced += 1
            row.verified = row.verified and quote.verified
    return totals


def budget_check(team, lines: Sequence[Line]) -> BudgetCheck | None:
    if team is None or team.monthly_budget is None:
        return None
    priced = [line for line in lines if line.quote]
    would_be = sum((ln.amount for ln in priced if ln.provider.is_sandbox), ZERO)
    wanted = sum((ln.amount for ln in priced if not ln.provider.is_sandbox), ZERO)
    return BudgetCheck(ledger.usage(team), wanted, would_be)


def mark_reuse(lines: Sequence[Line], team, fresh=()) -> None:
    """Lines whose image (by its sha256) the team already had done with the same provider
    and options, result still stored: they reuse it for free unless their key is in
    `fresh`. The same match as the submit's (jobs/reuse.py), in one query."""
    lines = [ln for ln in lines if ln.quote and ln.info and ln.info.sha256]
    done = reuses.stored_results(team, [ln.info.sha256 for ln in lines]) if lines else []
    for line in lines:
        options = line.provider.resolve_options(line.options, line.info)
        found = reuses.pick(done, line.info.sha256, line.provider, options)
        if found:
            line.reuse = reuses.Reuse.of(found)
            line.fresh = line.key in fresh


def preview(choices, infos, *, raw_options=None, team=None, fresh=()) -> Preview:
    """choices: [(slug, raw options)] as picked; infos: [(name, ImageInfo)] as measured;
    raw_options: every provider's panel values (slug -> raw), for the comparison; fresh:
    the keys of the lines to run again rather than reuse (Line.key)."""
    lines, totals, fit = [], [], None
    # The submit's own checks of each file first (too small, too large, not an image):
    # an image it would refuse is priced by no provider.
    refusals = [FileRefusal(name, info, measured_refusal(info)) for name, info in infos]
    refusals = [r for r in refusals if r.message]
    accepted = [(name, info) for name, info in infos if not any(r.info is info for r in refusals)]
    if accepted:  # nothing to price (and no query for the books) before images are chosen
        pricer = Pricer()
        lines = chosen_lines(pricer, choices, accepted)
        mark_reuse(lines, team, set(fresh))
        raw = {**(raw_options or {}), **dict(choices)}
        totals = provider_totals(pricer, raw, {slug for slug, _ in choices}, accepted)
    budget = budget_check(team, lines)
    if accepted:
        fit = fit_plan.plan(pricer, accepted, raw, team, budget.usage if budget else None)
    return Preview(list(infos), lines, totals, budget, refusals, fit)


# --- the job page's cost card ----------------------------------------------------------------
@dataclass(frozen=True)
class JobCost:
    quote: Quote  # held when the job was accepted
    charge: LedgerEntry | None  # written when it succeeded, from the actual output
    book: PriceBook | None  # the charge's book once charged, else the quote's
    rule: str  # that book's rule in words
    sandbox: bool
    # billing.exposure: "possibly_billed" (the hold stays open until an admin checks),
    # then "charged" or "not_billed" with who decided, when and why.
    billing: str = ""
    resolved_by: str = ""
    resolved_at: datetime.datetime | None = None
    resolution: str = ""

    @property
    def verified(self) -> bool:
        return self.book.verified if self.book else self.quote.verified

    @property
    def possibly_billed(self) -> bool:
        return self.billing == ledger.POSSIBLY_BILLED


def cost(job) -> JobCost:
    charge = job.charge
    book = charge.price_book if charge and charge.price_book_id else job.price_book
    rule = book.rule if book else RULES.get(job.provider)
    verified = book.verified if book else bool(rule and rule.get("verified", True))
    quote = Quote(job.quoted_amount, "quoted", job.quote_explanation, verified)
    resolver = job.billing_resolved_by if job.billing_resolved_by_id else None
    return JobCost(
        quote,
        charge,
        book,
        describe(rule) if rule else "",
        job.sandbox,
        billing=job.billing_status,
        resolved_by=resolver.get_username() if resolver else "",
        resolved_at=job.billing_resolved_at,
        resolution=job.billing_resolution,
    )
