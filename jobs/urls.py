from django.urls import path, re_path

from jobs import views

app_name = "jobs"
urlpatterns = [
    path("providers/", views.providers, name="providers"),
    path("upload/preview/", views.preview, name="preview"),
    path("jobs/batch/<uuid:batch>/compare/", views.compare, name="compare"),
    path("", views.upload, name="upload"),
    path("jobs/", views.history, name="history"),
    path("jobs/<int:pk>/", views.detail, name="detail"),
    path("jobs/<int:pk>/row/", views.row, name="row"),
    path("jobs/<int:pk>/download/", views.download, name="download"),
    path("jobs/<int:pk>/cancel/", views.cancel, name="cancel"),
    path("jobs/<int:pk>/rerun/", views.rerun, name="rerun"),
    re_path(
        r"^jobs/(?P<pk>[0-9]+)/(?P<which>input|output)/(?P<kind>image|thumb)/$",
        views.image,
        name="image",
    ),
]
