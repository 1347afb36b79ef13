"""Saved presets: a named provider + options set a team picks again on the upload page.

Any member of a team (manager or member) may save, replace or delete the team's presets;
other teams' presets do not exist for them (404). Saving under a name the team already
uses is refused unless the request says to replace it: the page asks first.
"""

from django.db import IntegrityError, transaction
from django.http import Http404
from django.shortcuts import get_object_or_404

from billing.teams import teams_of
from jobs import intake
from jobs.models import Preset

NAME_MAX = Preset._meta.get_field("name").max_length


class PresetRefused(Exception):
    def __init__(self, message: str, *, exists: bool = False):
        super().__init__(message)
        self.message = message
        self.exists = exists  # the name is taken: offer to replace it


def presets_of(user):
    return Preset.objects.filter(team__in=teams_of(user)).select_related("team")


def preset_of(user, pk) -> Preset:
    """One of the user's teams' presets, or 404."""
    if not str(pk).isdigit():
        raise Http404("No such preset")
    return get_object_or_404(presets_of(user), pk=pk)


def clean_name(raw) -> str:
    name = " ".join(str(raw or "").split())
    if not name:
        raise PresetRefused("Give the preset a name.")
    if len(name) > NAME_MAX:
        raise PresetRefused(f"A preset name can be up to {NAME_MAX} characters long.")
    return name


def save(*, user, team, name, choices, replace=False) -> Preset:
    """Store the chosen providers and their options (cleaned as a submit would clean them)
    under `name` for `team`."""
    if team is None:
        raise PresetRefused("Pick one of your teams.")
    name = clean_name(name)
    try:
        selections = intake.select(choices)
    except intake.SubmissionRefused as refusal:
        raise PresetRefused(" ".join(refusal.errors)) from None
    stored = [[sel.provider.slug, sel.options] for sel in selections]
    with transaction.atomic():
        existing = Preset.objects.select_for_update().filter(team=team, name=name).first()
        if existing and not replace:
            raise PresetRefused(
                f"{team.name} already has a preset called \u201c{name}\u201d.", exists=True
            )
        if existing:
            existing.choices, existing.created_by = stored, user
            existing.save(update_fields=["choices", "created_by"])
            return existing
        try:
            with transaction.atomic():
                return Preset.objects.create(team=team, name=name, choices=stored, created_by=user)
        except IntegrityError:  # saved by someone else a moment ago: ask, as above
            raise PresetRefused(
                f"{team.name} already has a preset called \u201c{name}\u201d.", exists=True
            ) from None


def panel_values(preset: Preset) -> tuple[list[str], dict[str, dict]]:
    """(chosen slugs, slug -> options) for forms.provider_panels."""
    pairs = [
        (pair[0], pair[1])
        for pair in preset.choices
        if isinstance(pair, list | tuple) and len(pair) == 2 and isinstance(pair[1], dict)
    ]
    return [slug for slug, _ in pairs], dict(pairs)
