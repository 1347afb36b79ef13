"""Personal API tokens: made once, shown once, stored as a digest; revoked, never deleted."""

import hashlib
import secrets

from django.conf import settings
from django.utils import timezone

from jobs.models import ApiToken
from upscaler_site.env import derived_secret

PREFIX = "upk_"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(user, name: str) -> tuple[ApiToken, str]:
    """A new token for `user`; returns the row and the token, which is never seen again."""
    ident = secrets.token_hex(4)
    token = f"{PREFIX}{ident}_{secrets.token_urlsafe(32)}"
    row = ApiToken.objects.create(
        user=user, name=name[:60], prefix=f"{PREFIX}{ident}", digest=digest(token)
    )
    return row, token


def verify(token: str) -> ApiToken | None:
    """The live token this is, of an active user, or None. Notes when it was last used."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    found = (
        ApiToken.objects.select_related("user")
        .filter(digest=digest(token), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if found is not None:
        now = timezone.now()
        if found.last_used_at is None or (now - found.last_used_at).total_seconds() > 60:
            # At most once a minute: not a write on every call.
            ApiToken.objects.filter(pk=found.pk).update(last_used_at=now)
            found.last_used_at = now
    return found


def webhook_secret(token: ApiToken) -> str:
    """The token's Standard Webhooks signing secret ("whsec_" + base64 of 32 bytes),
    derived from SECRET_KEY and the token's own digest: nothing to store, different per
    token, and gone with it."""
    import base64

    raw = bytes.fromhex(derived_secret(settings.SECRET_KEY, f"webhook:{token.digest}"))
    return "whsec_" + base64.b64encode(raw).decode()


def revoke(token: ApiToken, by) -> bool:
    """Revoke a live token (its owner on the Account page, or staff in the admin); False if
    it was already revoked. A conditional UPDATE: two clicks revoke it once."""
    changed = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_by=by
    )
    return bool(changed)


def of_user(user):
    """The user's tokens, live and revoked, newest first."""
    return ApiToken.objects.filter(user=user).order_by("-created_at", "-pk")
