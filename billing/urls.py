from django.urls import path

from billing import views

app_name = "billing"
urlpatterns = [
    path("", views.spend, name="spend"),
    path("export.csv", views.spend_csv, name="spend-csv"),
]
