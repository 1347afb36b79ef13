from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path

from billing import team_views
from jobs import inbound
from jobs.api import api, reference

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # An invitation's one-time link (billing/members.py), then "password set, sign in".
    path(
        "accounts/set-password/<uidb64>/<token>/",
        team_views.SetPassword.as_view(),
        name="set-password",
    ),
    path("accounts/set-password/done/", team_views.password_set, name="set-password-done"),
    path("admin/", admin.site.urls),
    path("hooks/<slug:provider>/<int:pk>/<str:token>/", inbound.webhook, name="webhook"),
    path("inputs/<str:token>/", inbound.serve_input, name="job-input"),
    path("spend/", include("billing.urls")),
    path("teams/", include("billing.team_urls")),
    path("api/v1/reference/", reference.page, name="api-reference"),  # before the API
    path("api/v1/", api.urls),
    re_path(r"^api/", reference.not_found),  # after the API: its unknown addresses
    path("", include("jobs.urls")),
]
if settings.SANDBOX_ENABLED:
    # The emulators exist only in sandbox mode: in production there is nothing to reach.
    urlpatterns.insert(0, path("sandbox/", include("jobs.sandbox.urls")))
