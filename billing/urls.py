from django.urls import path

from billing import views

app_name = "billing"
urlpatterns = [
    path("", views.spend, name="spend"),
    path("export.csv", views.spend_csv, name="spend-csv"),
    path(
        "approvals/<uuid:batch>/approve/",
        views.approval_decide,
        {"decision": "approve"},
        name="approve",
    ),
    path(
        "approvals/<uuid:batch>/reject/",
        views.approval_decide,
        {"decision": "reject"},
        name="reject",
    ),
]
