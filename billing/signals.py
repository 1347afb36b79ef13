from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver

from billing.teams import ensure_personal_team


@receiver(user_logged_in)
def give_new_users_a_team(sender, request, user, **kwargs):
    ensure_personal_team(user)
