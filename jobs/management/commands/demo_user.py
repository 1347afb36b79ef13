import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from billing.teams import ensure_personal_team


class Command(BaseCommand):
    help = "Create the demo login once and print how to sign in."

    def handle(self, **options):
        username = os.environ.get("DEMO_USERNAME", "demo")
        password = os.environ.get("DEMO_PASSWORD", "demo-upscaler")
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is not None:
            # bin/run calls this at every start: setting the password again would sign
            # the user out (sessions hold a hash of it) and undo any change they made.
            ensure_personal_team(user)
            self.stdout.write(f"Demo login {username!r} already exists: left as it is.")
            return
        user = User.objects.create_user(
            username, f"{username}@localhost", password, is_staff=True, is_superuser=True
        )
        ensure_personal_team(user)
        self.stdout.write(f"Created demo login: user {username!r}, password {password!r}")
