from django.urls import path, re_path

from jobs import account_views, views

app_name = "jobs"
urlpatterns = [
    path("providers/", views.providers, name="providers"),
    path("upload/preview/", views.preview, name="preview"),
    path("upload/presets/save/", views.preset_save, name="preset_save"),
    path("upload/presets/apply/", views.preset_apply, name="preset_apply"),
    path("upload/presets/delete/", views.preset_delete, name="preset_delete"),
    path("upload/fit/apply/", views.fit_apply, name="fit_apply"),
    path("jobs/batch/<uuid:batch>/compare/", views.compare, name="compare"),
    path("jobs/batch/<uuid:batch>/states/", views.batch_states, name="batch-states"),
    path("", views.upload, name="upload"),
    path("jobs/", views.history, name="history"),
    path("jobs/newer/", views.history_newer, name="history_newer"),
    path("jobs/<int:pk>/", views.detail, name="detail"),
    path("jobs/<int:pk>/row/", views.row, name="row"),
    path("jobs/<int:pk>/download/", views.download, name="download"),
    path("jobs/<int:pk>/cancel/", views.cancel, name="cancel"),
    path("jobs/<int:pk>/delete/", views.delete_files, name="delete"),
    path("jobs/batch/<uuid:batch>/zip/", views.batch_zip, name="batch-zip"),
    path("jobs/zip/", views.selection_zip, name="zip"),
    path("jobs/<int:pk>/rerun/", views.rerun, name="rerun"),
    path("jobs/<int:pk>/keep/", views.keep, name="keep"),
    path("account/", account_views.account, name="account"),
    path("account/tokens/", account_views.token_create, name="token_create"),
    path("account/tokens/<int:pk>/revoke/", account_views.token_revoke, name="token_revoke"),
    re_path(
        r"^jobs/(?P<pk>[0-9]+)/(?P<which>input|output)/(?P<kind>image|thumb)/$",
        views.image,
        name="image",
    ),
]
