"""Fit to budget and approval above a limit, in the API: `POST /fit` (the upload page's
"What fits the budget", from jobs.quotes.preview and jobs/fit.py), and a manager's
`POST /jobs/{id}/approve` and `/reject` for the whole submission of that job
(jobs/approvals.py: the spend page's buttons call the same functions)."""

from typing import Any, Literal

from ninja import Field, Router, Schema

from billing.money import exact
from billing.teams import teams_of
from jobs import approvals, intake, quotes
from jobs.api.problems import Problem, ProblemOut
from jobs.imaging import ImageInfo

router = Router(tags=["Budget and approval"])


# --- fit to budget --------------------------------------------------------------------------------
class FitImage(Schema):
    name: str = Field("image", max_length=200)
    width: int = Field(..., ge=1, le=100_000)
    height: int = Field(..., ge=1, le=100_000)
    size_bytes: int = Field(0, ge=0, description="File size; 0 when not known")
    format: Literal["JPEG", "PNG", "WEBP"] = "PNG"
    alpha: bool = False


class FitIn(Schema):
    team: int | None = Field(None, description="One of your teams (default: your first)")
    images: list[FitImage] = Field(..., min_length=1, max_length=50)
    options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per provider slug, the options the others are priced at (its defaults "
        'otherwise), e.g. {"ximilar": {"model_type": "gan"}}',
    )


class FitSetOut(Schema):
    provider: str
    provider_name: str
    label: str = Field(..., description='The value of its main option, e.g. "2x" or "4k"')
    options: dict[str, Any]
    amount: str = Field(..., description="All the images, USD to 4 places")
    fits: bool
    over_by: str
    sandbox: bool = Field(..., description="Not billed: `amount` is what it would cost")
    verified: bool


class FitOut(Schema):
    team: str
    budget: str | None = Field(..., description="Monthly budget; null: none, nothing to plan")
    left: str | None
    images: int
    sentence: str
    sandbox_sentence: str
    fits: list[FitSetOut] = Field(..., description="Billed sets that fit, cheapest first")
    over: list[FitSetOut] = Field(..., description="Billed sets that do not, nearest first")
    sandbox: list[FitSetOut] = Field(..., description="Sandbox sets, apart: not billed")
    unusable: list[str] = Field(..., description="Sets a provider cannot take every image at")
    refused: list[str] = Field(..., description="Images the portal refuses, and why")


def set_out(s) -> dict:
    return {
        "provider": s.provider.slug,
        "provider_name": s.provider.name,
        "label": s.label,
        "options": s.options,
        "amount": exact(s.amount),
        "fits": s.fits,
        "over_by": exact(s.over_by),
        "sandbox": s.sandbox,
        "verified": s.verified,
    }


def fit_out(fit, refused=()) -> dict:
    """A jobs.fit.Fit as FitOut (the quote endpoint may reuse it for its `fit` field)."""
    return {
        "team": fit.team,
        "budget": None if fit.budget is None else exact(fit.budget),
        "left": None if fit.left is None else exact(fit.left),
        "images": fit.count,
        "sentence": fit.sentence,
        "sandbox_sentence": fit.sandbox_sentence,
        "fits": [set_out(s) for s in fit.fits],
        "over": [set_out(s) for s in fit.over],
        "sandbox": [set_out(s) for s in fit.sandbox_fits + fit.sandbox_over],
        "unusable": list(fit.unusable),
        "refused": list(refused),
    }


@router.post(
    "/fit",
    response={200: FitOut, 404: ProblemOut, 422: ProblemOut},
    summary="What fits the budget",
)
def fit(request, payload: FitIn):
    """Every provider at each value of its main option (scale or resolution), for these
    images, against what is left of the team's budget this month."""
    teams = teams_of(request.user)
    team = teams.filter(pk=payload.team).first() if payload.team else teams.first()
    if team is None:
        raise Problem(404, "No such team, or not yours.")
    # A size of 0 is "not known" (an empty file would be refused): 1 byte passes that check.
    infos = [
        (
            intake.display_name(i.name),
            ImageInfo(i.format, i.width, i.height, i.alpha, i.size_bytes or 1),
        )
        for i in payload.images
    ]
    raw = {slug: {k: str(v) for k, v in opts.items()} for slug, opts in payload.options.items()}
    preview = quotes.preview([], infos, raw_options=raw, team=team)
    refused = [f"{r.name}: {r.message}" for r in preview.file_refusals]
    if preview.fit is None:
        raise Problem(422, "None of the images can be taken.", errors=refused)
    return fit_out(preview.fit, refused)


# --- approval -------------------------------------------------------------------------------
class RejectIn(Schema):
    reason: Literal[approvals.REASONS] = Field(..., description="Why, from the fixed list")


class DecisionOut(Schema):
    batch: str
    state: str = Field(..., description="Where the jobs went: queued or canceled")
    decided: list[int] = Field(..., description="Jobs moved now; empty: decided before")
    detail: str


def _decide(request, pk, decide) -> dict:
    job = approvals.job_of(request.user, pk)  # 404 for outsiders
    try:
        done = decide(job.batch)
    except approvals.NotAllowed as refusal:
        raise Problem(403, refusal.message) from None
    except approvals.BadReason as refusal:
        raise Problem(422, refusal.message) from None
    n = done.count
    detail = (
        f"{n} job{'' if n == 1 else 's'} {done.state}."
        if n
        else "Nothing was waiting: this submission was decided already."
    )
    return {"batch": str(job.batch), "state": done.state, "decided": done.decided, "detail": detail}


@router.post(
    "/jobs/{job_id}/approve",
    response={200: DecisionOut, 403: ProblemOut, 404: ProblemOut, 422: ProblemOut},
    summary="Approve a submission waiting for a manager",
)
def approve(request, job_id: int):
    """Approve the whole submission (batch) of this job: its waiting jobs are queued.
    Managers of the job's team (and staff) only; approving twice changes nothing."""
    return _decide(request, job_id, lambda batch: approvals.approve(request.user, batch))


@router.post(
    "/jobs/{job_id}/reject",
    response={200: DecisionOut, 403: ProblemOut, 404: ProblemOut, 422: ProblemOut},
    summary="Reject a submission waiting for a manager",
)
def reject(request, job_id: int, payload: RejectIn):
    """Reject the whole submission (batch) of this job with a reason: its waiting jobs are
    canceled and their holds released. Managers of the job's team (and staff) only."""
    return _decide(
        request, job_id, lambda batch: approvals.reject(request.user, batch, payload.reason)
    )
