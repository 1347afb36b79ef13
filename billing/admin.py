from django import forms
from django.contrib import admin
from django.db.models import Max
from django.forms.fields import InvalidJSONInput
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import urlencode

from billing.models import BudgetWarning, LedgerEntry, Membership, PriceBook, Team, TeamEvent
from billing.pricing import describe, price


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]
    fields = ["user", "role", "monthly_cap"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "monthly_budget", "created_at"]
    fields = ["name", "monthly_budget"]
    search_fields = ["name"]
    inlines = [MembershipInline]


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records the portal writes itself: staff look, nobody adds, edits or deletes."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# --- price books: a new price is a new version; versions are never edited ----------------
def _check_rule(rule) -> None:
    """Price a few sizes under the rule, so a malformed one is refused in the form
    rather than at the next submission."""
    if not isinstance(rule, dict) or "kind" not in rule:
        raise forms.ValidationError('A rule is an object with a "kind", e.g. {"kind": "free"}.')
    options = [None]
    if rule.get("by_option") and isinstance(rule.get("brackets"), dict):
        options = [{rule["by_option"]: key} for key in rule["brackets"]]
    try:
        for opts in options:
            for side in (1, 2000, 5000, 20000):
                price(rule, "check", side, side, opts)
        describe(rule)
    except Exception as error:  # any shape error: say so in the form
        raise forms.ValidationError(
            f"This rule cannot price an image ({type(error).__name__}: {error}). "
            "See billing/pricing.py for the shapes: free, flat, brackets, per_mp_ceil."
        ) from None


RULE_HELP = (
    "Prices as data (billing/pricing.py). Examples: "
    '{"kind": "free"} · {"kind": "flat", "price": "0.01"} · '
    '{"kind": "per_mp_ceil", "price": "0.016"} · '
    '{"kind": "brackets", "brackets": [[4000000, "0.07", "up to 4 MP"], '
    '[null, "0.12", "over 4 MP"]]} (upper bounds in pixels, inclusive; null: and above). '
    'Add "verified": false inside a rule, or untick Verified, for an assumed price.'
)


class PriceBookForm(forms.ModelForm):
    provider = forms.ChoiceField()
    version = forms.IntegerField(
        required=False, min_value=1, help_text="Leave empty for the provider's last version + 1."
    )

    class Meta:
        model = PriceBook
        fields = ["provider", "version", "effective_from", "rule", "verified", "note"]
        help_texts = {"rule": RULE_HELP}

    def __init__(self, *args, **kwargs):
        from jobs.providers import provider_choices

        super().__init__(*args, **kwargs)
        if "provider" in self.fields:  # not when the admin shows a version read-only
            self.fields["provider"].choices = provider_choices()
            self.fields["effective_from"].initial = timezone.now
            if self.initial.get("rule") is None:
                self.initial["rule"] = InvalidJSONInput("")  # an empty box, not "null"

    def clean_rule(self):
        rule = self.cleaned_data["rule"]
        _check_rule(rule)
        return rule

    def clean(self):
        data = super().clean()
        provider, version = data.get("provider"), data.get("version")
        if provider and version and PriceBook.objects.filter(provider=provider, version=version):
            self.add_error("version", f"{provider} already has a version {version}.")
        return data


@admin.register(PriceBook)
class PriceBookAdmin(admin.ModelAdmin):
    form = PriceBookForm
    list_display = ["provider", "version", "effective_from", "verified", "note", "new_version"]
    list_filter = ["provider", "verified"]
    readonly_fields = ["rule_in_words"]

    @admin.display(description="Rule in words")
    def rule_in_words(self, obj):
        return describe(obj.rule) if obj and obj.rule else "—"

    @admin.display(description="")
    def new_version(self, obj):
        url = reverse("admin:billing_pricebook_add") + "?" + urlencode({"from": obj.pk})
        return format_html('<a href="{}">New version</a>', url)

    def get_changeform_initial_data(self, request):
        """ "New version from this": start from that version's rule, to edit."""
        initial = super().get_changeform_initial_data(request)
        source_id = request.GET.get("from", "")
        source = PriceBook.objects.filter(pk=source_id).first() if source_id.isdigit() else None
        if source:
            initial.update(provider=source.provider, rule=source.rule, verified=source.verified)
        return initial

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["provider", "version", "effective_from", "rule", "verified", "note"]
        return [
            "provider",
            "version",
            "effective_from",
            "rule",
            "rule_in_words",
            "verified",
            "note",
            "created_at",
        ]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return self.get_fields(request, obj)

    def save_model(self, request, obj, form, change):
        if not obj.version:
            last = PriceBook.objects.filter(provider=obj.provider).aggregate(v=Max("version"))
            obj.version = (last["v"] or 0) + 1
        super().save_model(request, obj, form, change)

    def has_change_permission(self, request, obj=None):
        return False  # viewing only: PriceBook.save() refuses edits too

    def has_delete_permission(self, request, obj=None):
        return False  # charges name the version that priced them


# --- the ledger: append-only, written only by billing/ledger.py ------------------------------
@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "team",
        "kind",
        "provider",
        "amount",
        "sandbox",
        "job_number",
    ]  # the explanation is on each entry's page: the list stays one line a row
    list_filter = ["kind", "provider", "sandbox", "team"]
    list_select_related = ["team"]
    search_fields = ["explanation", "idempotency_key"]
    date_hierarchy = "created_at"

    @admin.display(description="Job", ordering="job")
    def job_number(self, obj):
        return f"#{obj.job_id}" if obj.job_id else "—"


@admin.register(BudgetWarning)
class BudgetWarningAdmin(ReadOnlyAdmin):
    list_display = ["team", "period", "threshold", "sent_at"]
    list_filter = ["threshold", "team"]


# Written by the team page (billing/members.py). Budget edits made here, in the admin, are
# staff's own and write no team event.
@admin.register(TeamEvent)
class TeamEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "team", "actor", "kind", "text"]
    list_filter = ["kind", "team"]
    list_select_related = ["team", "actor"]
    search_fields = ["text"]
    date_hierarchy = "created_at"
