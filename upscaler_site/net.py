"""Who is asking: the client's address behind TRUSTED_PROXY_COUNT proxies."""

from django.conf import settings


def client_ip(request) -> str:
    """REMOTE_ADDR, or with proxies in front, the address the outermost trusted proxy saw
    (counted from the right of X-Forwarded-For, so a client cannot choose it)."""
    count = settings.TRUSTED_PROXY_COUNT
    forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [a for a in forwarded if a]
    if count and len(forwarded) >= count:
        return forwarded[-count]
    return request.META.get("REMOTE_ADDR", "")
