"""What can be ordered and what it would cost: the providers with their options, and the
quote (the upload page's preview, `jobs.quotes.preview`, on sizes sent as JSON)."""

import datetime
from decimal import Decimal

from ninja import Field, Router, Schema

from billing import money
from billing.teams import teams_of
from jobs import quotes
from jobs.api.approvals import FitOut, fit_out  # POST /fit's own answer, one schema
from jobs.api.problems import Problem, ProblemOut
from jobs.imaging import ImageInfo
from jobs.intake import display_name
from jobs.providers import all_providers

router = Router(tags=["Catalog"])

Value = int | float | str


class ChoiceOut(Schema):
    value: Value
    label: str


class OptionOut(Schema):
    name: str  # sent as the form field `<provider>-<name>`
    label: str
    kind: str  # "choice" (one of `choices`) or "number" (from `minimum` to `maximum`)
    default: Value
    choices: list[ChoiceOut] = []
    minimum: float | None = None
    maximum: float | None = None
    suggestions: list[Value] = []
    help: str = ""


class ProviderOut(Schema):
    slug: str
    name: str
    description: str
    sandbox: bool  # not billed: answers from the portal's own emulation of the provider
    available: bool
    unavailable_reason: str = ""
    options: list[OptionOut]


def provider_out(provider) -> dict:
    return {
        "slug": provider.slug,
        "name": provider.name,
        "description": provider.summary,
        "sandbox": provider.is_sandbox,
        "available": provider.available,
        "unavailable_reason": provider.unavailable_reason,
        "options": [
            {
                "name": opt.name,
                "label": opt.label,
                "kind": "choice" if opt.is_choice else "number",
                "default": opt.default,
                "choices": [{"value": v, "label": label} for v, label in opt.choices],
                "minimum": opt.minimum,
                "maximum": opt.maximum,
                "suggestions": list(opt.suggestions),
                "help": opt.help,
            }
            for opt in provider.options
        ],
    }


@router.get("/providers", response={200: list[ProviderOut], 401: ProblemOut})
def providers(request):
    """Every provider with its options, as the upload form offers them."""
    return [provider_out(p) for p in all_providers()]


# --- quote ----------------------------------------------------------------------------------
class ImageSize(Schema):
    name: str = Field("image", max_length=255)
    width: int = Field(..., ge=0, le=1_000_000)
    height: int = Field(..., ge=0, le=1_000_000)
    bytes: int = Field(0, ge=0, le=10**12)
    has_alpha: bool = False
    # As read from the file's first bytes; "" for a file that could not be read.
    format: str = Field("PNG", pattern=r"^[A-Za-z0-9]{0,10}$")
    # The file's SHA-256 (hex): the quote then says when the same image was done before.
    sha256: str = Field("", pattern=r"^([0-9a-fA-F]{64})?$")


class ProviderChoice(Schema):
    provider: str = Field(..., max_length=40)
    options: dict[str, Value] = {}


class QuoteIn(Schema):
    images: list[ImageSize] = Field(..., max_length=50)
    providers: list[ProviderChoice] = Field(..., max_length=20)
    team: int | None = Field(None, ge=1, le=2**63 - 1)  # default: your first team
    # Lines (their `key`) to run again at full price rather than reuse an earlier result.
    fresh: list[str] = Field([], max_length=1000)


class ReuseOut(Schema):
    job_id: int
    done_at: datetime.datetime | None = None
    by: str = ""


class LineOut(Schema):
    key: str  # names the line in `fresh`
    image: str
    provider: str
    options: dict[str, Value]
    label: str
    width: int | None = None  # the predicted result
    height: int | None = None
    amount: Decimal | None = None  # what it holds: None when refused, 0 when reused
    price: str = ""  # the amount in words, e.g. "$0.12"
    quoted: Decimal | None = None  # the price of running it (what a reuse saves)
    tier: str = ""
    why: str = ""  # the price book's explanation of the tier
    verified: bool = True  # False: the price is an assumption we could not confirm
    sandbox: bool
    refusal: str = ""
    warning: str = ""
    cheaper: str = ""  # a smaller option of the same provider in a cheaper tier
    reuse: ReuseOut | None = None  # the same image, provider and options were done already
    reused: bool = False  # it will take that result for free (not in `fresh`)


class FileRefusalOut(Schema):
    image: str
    refusal: str


class BudgetOut(Schema):
    budget: Decimal
    spent: Decimal
    held: Decimal
    left: Decimal
    wanted: Decimal  # what this submission would hold (real providers only)
    would_be: Decimal  # what its sandbox lines would cost with real providers (not billed)
    over: bool  # the submission would be refused
    over_if_real: bool


class QuoteOut(Schema):
    lines: list[LineOut]
    file_refusals: list[FileRefusalOut]
    total: Decimal
    real_total: Decimal
    sandbox_total: Decimal
    budget: BudgetOut | None = None  # None: the team has no monthly budget
    fit: FitOut | None = None  # None: no image could be priced
    blocked: str  # why the submit would be refused ("" when it would be accepted)


def is_id(value) -> bool:
    """Whether `value` can be a row's id (a positive 64-bit integer): anything else would
    fail in the database rather than simply not be found."""
    return str(value).isdigit() and 0 < int(value) < 2**63


def quote_team(user, team_id):
    """The team a quote or a submission is for: the one named (of the user's teams) or
    the first; a Problem otherwise, in the upload page's words."""
    teams = teams_of(user)
    if team_id is None:
        team = teams.first()
    else:
        team = teams.filter(pk=team_id).first() if is_id(team_id) else None
    if team is None:
        raise Problem(422, "Pick one of your teams.", errors=["Pick one of your teams."])
    return team


def line_out(line) -> dict:
    quote, hint, reuse = line.quote, line.hint, line.reuse
    return {
        "key": line.key,
        "image": line.name,
        "provider": line.provider.slug,
        "options": line.options,
        "label": line.label,
        "width": line.size[0] if line.size else None,
        "height": line.size[1] if line.size else None,
        "amount": line.amount if quote else None,
        "price": money.price(line.amount) if quote else "",
        "quoted": quote.amount if quote else None,
        "tier": quote.tier if quote else "",
        "why": quote.explanation if quote else "",
        "verified": quote.verified if quote else True,
        "sandbox": line.provider.is_sandbox,
        "refusal": line.error,
        "warning": line.warning,
        "cheaper": (
            f"{hint.label}: {hint.size[0]}x{hint.size[1]} for {money.price(hint.quote.amount)}"
            f" ({hint.tier})"
            if hint
            else ""
        ),
        "reuse": {"job_id": reuse.job_id, "done_at": reuse.done_at, "by": reuse.by}
        if reuse
        else None,
        "reused": line.reused,
    }


def budget_out(check) -> dict | None:
    if check is None:
        return None
    use = check.usage
    return {
        "budget": use.budget,
        "spent": use.spent,
        "held": use.held,
        "left": check.left,
        "wanted": check.wanted,
        "would_be": check.would_be,
        "over": check.over,
        "over_if_real": check.over_if_real,
    }


@router.post("/quote", response={200: QuoteOut, 401: ProblemOut, 422: ProblemOut})
def quote(request, body: QuoteIn):
    """What these images would cost with these providers, line by line, and how that sits
    against the team's budget: the upload page's own preview, before anything is sent."""
    team = quote_team(request.user, body.team)
    infos = [
        (
            display_name(size.name),
            ImageInfo(
                size.format.upper(),
                size.width,
                size.height,
                size.has_alpha,
                size.bytes,
                sha256=size.sha256.lower(),
            ),
        )
        for size in body.images
    ]
    choices = [(c.provider, {k: str(v) for k, v in c.options.items()}) for c in body.providers]
    preview = quotes.preview(choices, infos, team=team, fresh=body.fresh)
    # A provider refused as a whole (a bad option, not set up) has one line, no image.
    lines = [line_out(line) for line in preview.lines]
    known = {line.provider.slug for line in preview.lines}
    for slug, _raw in choices:
        if slug not in known:
            lines.append(_unknown_provider(slug))
    return {
        "lines": lines,
        "file_refusals": [{"image": r.name, "refusal": r.message} for r in preview.file_refusals],
        "total": preview.total,
        "real_total": preview.real_total,
        "sandbox_total": preview.sandbox_total,
        "budget": budget_out(preview.budget),
        "fit": fit_out(preview.fit) if preview.fit else None,
        "blocked": _blocked(preview, lines),
    }


def _unknown_provider(slug: str) -> dict:
    # The submit's own words (jobs.intake.select): preview() skips such a choice.
    return {
        "key": "",
        "image": "",
        "provider": slug,
        "options": {},
        "label": "",
        "sandbox": False,
        "refusal": f"There is no provider called {slug!r}.",
    }


def _blocked(preview, lines) -> str:
    if any(line["refusal"] for line in lines) and preview.images:
        return "Fix the refused lines first."
    return preview.blocked
