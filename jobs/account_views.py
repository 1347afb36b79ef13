"""The Account page: a person's API tokens. A new token (and its webhook signing secret) is
shown once, in the answer to the POST that made it, and never again: only its digest is
stored, and the page is not cached."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from jobs.api import tokens
from jobs.models import ApiToken

NAME_MAX = ApiToken._meta.get_field("name").max_length


def _page(request, *, made=None, error="", name="", status=200):
    context = {
        "tokens": tokens.of_user(request.user),
        "made": made,
        "error": error,
        "name": name,
        "name_max": NAME_MAX,
        "api_base": request.build_absolute_uri("/api/v1"),
        "reference_url": reverse("api-reference"),
    }
    return render(request, "jobs/account.html", context, status=status)


@never_cache
@login_required
@require_GET
def account(request):
    return _page(request)


@never_cache
@login_required
@require_POST
def token_create(request):
    name = " ".join(request.POST.get("name", "").split())
    if not name:
        return _page(request, error="Give the token a name (what will use it).", status=422)
    if len(name) > NAME_MAX:
        error = f"A name of at most {NAME_MAX} characters, please."
        return _page(request, error=error, name=name, status=422)
    row, secret = tokens.create(request.user, name)
    # Rendered, not redirected: the secret must not wait in the session for the next page.
    made = {"row": row, "token": secret, "webhook_secret": tokens.webhook_secret(row)}
    return _page(request, made=made, status=201)


@login_required
@require_POST
def token_revoke(request, pk):
    token = get_object_or_404(ApiToken, pk=pk, user=request.user)  # someone else's: 404
    if tokens.revoke(token, by=request.user):
        messages.success(request, f"Revoked {token.name} ({token.prefix}…): it no longer works.")
    return redirect("jobs:account")
