"""/sandbox/<provider>/...: each provider's emulator, on the provider's own paths."""

from django.urls import include, path

from jobs.sandbox import engine

urlpatterns = [
    path("files/<str:token>/", engine.serve_file, name="sandbox-file"),
    path("pixazo/", include("jobs.sandbox.pixazo")),
    path("pixelcut/", include("jobs.sandbox.pixelcut")),
    path("fal/", include("jobs.sandbox.fal")),
    path("ximilar/", include("jobs.sandbox.ximilar")),
    path("apixo/", include("jobs.sandbox.apixo")),
]
