import datetime

from django import forms
from django.contrib.auth import get_user_model
from django.utils import timezone

from jobs.models import Job
from jobs.providers import all_providers, provider_choices


def provider_choices_from(data) -> list[tuple[str, dict]]:
    """Read the chosen providers and their options from a POST.

    Options are named `<provider>-<option>` so several providers can be picked at once.
    """
    return [(slug, options_from(data, slug)) for slug in data.getlist("provider")]


def options_from(data, slug) -> dict:
    """One provider's raw option values (`<provider>-<option>`), picked or not."""
    prefix = f"{slug}-"
    return {k[len(prefix) :]: v for k, v in data.items() if k.startswith(prefix)}


def all_options_from(data) -> dict[str, dict]:
    """Every provider's panel as the form shows it, for pricing the ones not picked."""
    return {p.slug: options_from(data, p.slug) for p in all_providers()}


def provider_panels(selected=(), values=None):
    """What the provider picker renders: each provider with its options and values."""
    values = values or {}
    panels = []
    for provider in all_providers():
        current = values.get(provider.slug, {})
        panels.append(
            {
                "provider": provider,
                # One that is not set up is shown, but cannot be picked.
                "checked": provider.slug in selected and provider.available,
                "options": [(opt, current.get(opt.name, opt.default)) for opt in provider.options],
            }
        )
    return panels


# History's filters come from URLs people copy, edit and bookmark: a value that cannot be
# used drops that one filter (the others still apply) and the page says why, in these words.
NOT_A_CHOICE = {"invalid_choice": "'%(value)s' is not one of the choices"}
NOT_A_DATE = {"invalid": "enter a valid date"}


class HistoryFilter(forms.Form):
    q = forms.CharField(required=False, label="File name")
    state = forms.ChoiceField(required=False, label="Status", error_messages=NOT_A_CHOICE)
    provider = forms.ChoiceField(required=False, error_messages=NOT_A_CHOICE)
    team = forms.TypedChoiceField(
        required=False, coerce=int, empty_value=None, error_messages=NOT_A_CHOICE
    )
    person = forms.ModelChoiceField(
        queryset=None,
        required=False,
        empty_label="Anyone",
        error_messages={"invalid_choice": "no such person in your teams"},
    )
    since = forms.DateField(
        required=False,
        label="From",
        widget=forms.DateInput({"type": "date"}),
        error_messages=NOT_A_DATE,
    )
    until = forms.DateField(
        required=False,
        label="To",
        widget=forms.DateInput({"type": "date"}),
        error_messages=NOT_A_DATE,
    )

    def __init__(self, *args, teams, **kwargs):
        """teams: the user's teams, already fetched (a list): the page reads them once."""
        super().__init__(*args, **kwargs)
        self.fields["state"].choices = [("", "Any status"), *Job.State.choices]
        self.fields["provider"].choices = [("", "Any provider"), *provider_choices()]
        self.fields["person"].queryset = (
            get_user_model()
            .objects.filter(memberships__team__in=[t.pk for t in teams])
            .distinct()
            .order_by("username")
        )
        if len(teams) > 1:
            self.fields["team"].choices = [("", "Any team"), *((t.pk, t.name) for t in teams)]
        else:  # nothing to choose
            del self.fields["team"]

    @property
    def ignored(self) -> list[str]:
        """One line per filter dropped for a bad value, e.g. "Ignored 'From': enter a
        valid date."."""
        if not self.is_bound or self.is_valid():
            return []
        return [f"Ignored '{self[name].label}': {err[0]}." for name, err in self.errors.items()]

    def filter(self, jobs):
        if not self.is_bound:
            return jobs
        self.is_valid()  # a field with a bad value is left out of cleaned_data: not applied
        data = self.cleaned_data
        if data.get("q"):
            jobs = jobs.filter(input_name__icontains=data["q"])
        if data.get("state"):
            jobs = jobs.filter(state=data["state"])
        if data.get("provider"):
            jobs = jobs.filter(provider=data["provider"])
        if data.get("person"):
            jobs = jobs.filter(created_by=data["person"])
        if data.get("team"):
            jobs = jobs.filter(team_id=data["team"])
        # Days as a range of created_at (in the portal's time zone), not `created_at__date`:
        # a function of the column would keep the database from using its index.
        if data.get("since"):
            jobs = jobs.filter(created_at__gte=day_start(data["since"]))
        if data.get("until"):
            jobs = jobs.filter(created_at__lt=day_start(data["until"] + datetime.timedelta(1)))
        return jobs


def day_start(day: datetime.date) -> datetime.datetime:
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time.min))
