from django import template

from billing.spend import can_review

register = template.Library()


@register.filter
def can_review_spend(user) -> bool:
    """Staff and team managers: whether to offer the Spend page (one EXISTS query at most
    per request; staff none)."""
    return can_review(user)
