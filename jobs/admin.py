from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from billing import exposure
from billing.money import usd
from jobs.models import ApiToken, Job, JobEvent


class ResolveBillingForm(forms.Form):
    """An admin's verdict on a possibly billed job, after checking the provider's
    account. The reason is kept on the job and shown on its page."""

    decision = forms.ChoiceField(
        choices=[
            (exposure.CHARGED, "Charged: the provider billed it"),
            (exposure.NOT_BILLED, "Not billed: the provider did not bill it"),
        ],
        widget=forms.RadioSelect,
    )
    amount = forms.DecimalField(
        required=False,
        min_value=0,
        max_digits=12,
        decimal_places=4,
        help_text="USD. Only for charged; leave empty to charge the quote.",
    )
    reason = forms.CharField(
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Required: what you checked (an invoice, the provider's dashboard...).",
    )


class JobEventInline(admin.TabularInline):
    model = JobEvent
    extra = 0
    can_delete = False
    readonly_fields = ["at", "state", "detail"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = [
        "pk",
        "input_name",
        "provider",
        "state",
        "sandbox",
        "quoted_amount",
        "team",
        "created_by",
        "created_at",
        "billing_status",
    ]
    list_filter = ["state", "billing_status", "provider", "sandbox", "team"]
    search_fields = ["input_name", "provider_task_id"]
    date_hierarchy = "created_at"
    inlines = [JobEventInline]
    # The webhook token is a secret: it is not shown, not even to staff.
    exclude = ["webhook_token"]
    readonly_fields = [
        f
        for f in (
            "team",
            "created_by",
            "batch",
            "source_job",
            "provider",
            "options",
            "sandbox",
            "state",
            "input_name",
            "input_file",
            "input_thumb",
            "input_format",
            "input_width",
            "input_height",
            "input_bytes",
            "predicted_width",
            "predicted_height",
            "quoted_amount",
            "quote_explanation",
            "price_book",
            "output_file",
            "output_thumb",
            "output_format",
            "output_width",
            "output_height",
            "output_bytes",
            "files_expired_at",
            "input_owner",
            "provider_task_id",
            "next_poll_at",
            "poll_count",
            "error_code",
            "error_message",
            "created_at",
            "enqueued_at",
            "submitted_at",
            "finished_at",
            "updated_at",
            # Set only through the resolution form, which writes the ledger rows with them.
            "billing_check",
            "billing_status",
            "billing_resolved_by",
            "billing_resolved_at",
            "billing_resolution",
        )
    ]

    def has_add_permission(self, request):
        return False

    @admin.display(description="Billing check")
    def billing_check(self, obj):
        if obj.billing_status != Job.Billing.POSSIBLY_BILLED:
            return obj.get_billing_status_display()
        url = reverse("admin:jobs_job_resolve_billing", args=[obj.pk])
        return format_html(
            'Possibly billed: {} held. <a href="{}">Resolve…</a>', usd(obj.quoted_amount), url
        )

    def get_urls(self):
        resolve = self.admin_site.admin_view(self.resolve_billing_view)
        return [
            path("<path:object_id>/resolve-billing/", resolve, name="jobs_job_resolve_billing"),
            *super().get_urls(),
        ]

    def resolve_billing_view(self, request, object_id):
        """Mark a possibly billed job charged or not billed, with a reason: the ledger
        rows and the job's billing fields in one transaction (billing.exposure)."""
        if request.method not in ("GET", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        job = self.get_object(request, unquote(object_id))
        if job is None:
            raise Http404("No such job")
        if not self.has_change_permission(request, job):
            raise PermissionDenied
        form = ResolveBillingForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            amount = data["amount"] if data["decision"] == exposure.CHARGED else None
            done = exposure.resolve(
                job,
                by=request.user,
                decision=data["decision"],
                reason=data["reason"],
                amount=amount,
            )
            if done:
                self.message_user(request, f"Job {job.pk}: billing resolved.", messages.SUCCESS)
            else:
                self.message_user(
                    request, f"Job {job.pk} was resolved before; nothing changed.", messages.WARNING
                )
            return redirect(reverse("admin:jobs_job_change", args=[job.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Resolve billing of job {job.pk}",
            "job": job,
            "form": form,
            "open": job.billing_status == Job.Billing.POSSIBLY_BILLED,
            "events": job.events.all(),
        }
        return TemplateResponse(request, "admin/jobs/job/resolve_billing.html", context)


# --- API tokens (issue #12): read-only, no digest; staff revoke (jobs/api/tokens.py) ------
@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "user", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix", "user__username"]
    fields = ["name", "prefix", "user", "created_at", "last_used_at", "revoked_at", "revoked_by"]
    readonly_fields = fields
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False  # tokens are made by their owner on the Account page, shown once

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # revoked, never deleted: jobs and deliveries name their token

    @admin.action(description="Revoke the selected tokens", permissions=["revoke"])
    def revoke(self, request, queryset):
        from jobs.api import tokens

        done = sum(tokens.revoke(token, by=request.user) for token in queryset)
        self.message_user(request, f"Revoked {done} token(s).", messages.SUCCESS)

    def has_revoke_permission(self, request):
        return request.user.is_staff
