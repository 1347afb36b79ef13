from django.contrib import admin

from jobs.models import Job, JobEvent


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
    ]
    list_filter = ["state", "provider", "sandbox", "team"]
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
        )
    ]

    def has_add_permission(self, request):
        return False
