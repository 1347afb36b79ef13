"""The portal's own URLs plus views that fail on purpose, for the error-page tests."""

from django.core.exceptions import BadRequest, PermissionDenied
from django.urls import path

from upscaler_site.urls import urlpatterns as portal_urls

SECRET_DETAIL = "the-detail-no-visitor-may-see"


def crash(request):
    raise RuntimeError(SECRET_DETAIL)


def forbidden(request):
    raise PermissionDenied(SECRET_DETAIL)


def bad_request(request):
    raise BadRequest(SECRET_DETAIL)


urlpatterns = [
    path("test-errors/500/", crash),
    path("test-errors/403/", forbidden),
    path("test-errors/400/", bad_request),
    *portal_urls,
]
