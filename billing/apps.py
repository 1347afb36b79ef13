from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Teams and billing"

    def ready(self):
        from billing import signals  # noqa: F401
