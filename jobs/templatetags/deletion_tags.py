from django import template

from jobs import deletion

register = template.Library()


@register.filter
def deletable_by(job, user) -> bool:
    """Whether `user` may delete this job's files now: the job page shows the button
    only then (the view checks again)."""
    waiting = job.state == job.State.AWAITING_APPROVAL  # cancel it first, like a running job
    if job.is_active or waiting or job.files_expired_at or not user.is_authenticated:
        return False
    return deletion.may_delete(job, user)
