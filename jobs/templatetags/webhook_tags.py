"""The job page's "Webhook deliveries" (templates/jobs/_deliveries.html)."""

from django import template
from django.db.models import Q

from jobs import webhooks_out
from jobs.models import EventDelivery

register = template.Library()


@register.simple_tag
def deliveries_of(job):
    """The job's own events and its batch's "batch.ended"."""
    return list(EventDelivery.objects.filter(Q(job=job) | Q(batch=job.batch, job__isnull=True)))


@register.filter
def shown_url(url: str) -> str:
    return webhooks_out.shown_url(url)
