from django import template
from django.conf import settings

register = template.Library()


@register.simple_tag
def batch_email_minutes() -> str:
    """The upload form's promise: "...if it takes more than 3 minutes"."""
    minutes = settings.BATCH_EMAIL_AFTER_SECONDS / 60
    return f"{minutes:g} minute{'' if minutes == 1 else 's'}"
