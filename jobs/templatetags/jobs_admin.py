from django import template

from jobs import health

register = template.Library()


@register.inclusion_tag("admin/jobs/_status_box.html")
def status_box():
    """The admin index's status box (templates/admin/index.html)."""
    return {"s": health.overview()}


def _span(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours // 24} days"


@register.filter
def ago(moment, now) -> str:
    """`moment` against the box's own clock (`now`, read once with the checks), not
    Django's naturaltime/timesince, which read the wall clock again while rendering:
    "41 s ago", "5 h 00 min ago", "in 3 h 10 min"."""
    if moment is None:
        return "—"
    seconds = (now - moment).total_seconds()
    return f"{_span(seconds)} ago" if seconds >= 0 else f"in {_span(-seconds)}"


@register.filter
def age(moment, now) -> str:
    """How long since `moment`, without "ago": "2 h 05 min"."""
    return "—" if moment is None else _span(max((now - moment).total_seconds(), 0))
