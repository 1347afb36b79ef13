"""State of the sandboxes, the local emulators of the providers' APIs. Kept in the
database so several web processes share it."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class SandboxTask(models.Model):
    """One task as an emulated provider sees it. Its progress follows from its age:
    queued for the first fifth of the latency, processing until the latency has passed,
    then done (or failed, when a failure fault was on)."""

    provider = models.CharField(max_length=20)
    public_id = models.CharField(max_length=100, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    latency = models.FloatField()
    params = models.JSONField(default=dict)  # what the provider module needs to answer
    input_name = models.CharField(max_length=200, blank=True)
    output_name = models.CharField(max_length=200, blank=True)
    output_width = models.PositiveIntegerField(null=True)
    output_height = models.PositiveIntegerField(null=True)
    failure_code = models.CharField(max_length=100, blank=True)
    canceled_at = models.DateTimeField(null=True)
    webhook_url = models.TextField(blank=True)

    def __str__(self):
        return f"{self.provider} {self.public_id}"

    @property
    def completes_at(self):
        return self.created_at + timezone.timedelta(seconds=self.latency)

    def phase(self, now=None) -> str:
        now = now or timezone.now()
        if self.canceled_at:
            return "canceled"
        elapsed = (now - self.created_at).total_seconds()
        if elapsed < self.latency * 0.2:
            return "queued"
        if elapsed < self.latency:
            return "processing"
        return "failed" if self.failure_code else "done"


class SandboxFaults(models.Model):
    """Faults switched on per provider, for tests and demos (edit them in the admin)."""

    class Webhook(models.TextChoices):
        NORMAL = "normal", "Delivered once, on completion"
        DUPLICATE = "duplicate", "Delivered twice"
        LATE = "late", "Delivered late (after `late_seconds`)"
        OFF = "off", "Never delivered"

    provider = models.CharField(max_length=20, unique=True)
    latency = models.FloatField(null=True, blank=True, help_text="seconds; empty: default")
    error_status = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="429, 500 or 503 for the next `error_count` calls"
    )
    error_count = models.PositiveIntegerField(default=0)
    error_on = models.CharField(
        max_length=10,
        default="any",
        choices=[("any", "any"), ("submit", "submit"), ("poll", "poll")],
    )
    retry_after = models.PositiveSmallIntegerField(default=1)
    task_failure = models.CharField(
        max_length=100, blank=True, help_text="the provider's failure code for new tasks"
    )
    slow_seconds = models.FloatField(default=0, help_text="every API answer waits this long")
    webhook = models.CharField(max_length=10, choices=Webhook.choices, default=Webhook.NORMAL)
    late_seconds = models.FloatField(default=3.0)
    expired_results = models.BooleanField(default=False, help_text="result links already expired")

    class Meta:
        verbose_name_plural = "sandbox faults"

    def __str__(self):
        return f"faults for {self.provider}"

    @property
    def effective_latency(self) -> float:
        return self.latency if self.latency is not None else settings.SANDBOX_LATENCY
