import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from billing.teams import ensure_personal_team


class Command(BaseCommand):
    help = "Create (or refresh) the demo login and print how to sign in."

    def handle(self, **options):
        username = os.environ.get("DEMO_USERNAME", "demo")
        password = os.environ.get("DEMO_PASSWORD", "demo-upscaler")
        User = get_user_model()
        user, created = User.objects.get_or_create(
            username=username, defaults={"email": f"{username}@localhost"}
        )
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        ensure_personal_team(user)
        verb = "Created" if created else "Refreshed"
        self.stdout.write(f"{verb} demo login: user {username!r}, password {password!r}")
