from django.apps import AppConfig


class SandboxConfig(AppConfig):
    """The providers' emulators: installed (and routed) only when SANDBOX_ENABLED."""

    name = "jobs.sandbox"
    label = "sandbox"
    verbose_name = "Provider sandboxes"
    default_auto_field = "django.db.models.BigAutoField"
