from django.contrib import admin

from jobs.sandbox.models import SandboxFaults, SandboxTask


@admin.register(SandboxFaults)
class SandboxFaultsAdmin(admin.ModelAdmin):
    """Demos and manual tests switch sandbox faults on here."""

    list_display = [
        "provider",
        "latency",
        "error_status",
        "error_count",
        "task_failure",
        "slow_seconds",
        "webhook",
        "expired_results",
    ]


@admin.register(SandboxTask)
class SandboxTaskAdmin(admin.ModelAdmin):
    list_display = ["public_id", "provider", "created_at", "latency", "failure_code"]
    list_filter = ["provider"]
    readonly_fields = [f.name for f in SandboxTask._meta.fields]
