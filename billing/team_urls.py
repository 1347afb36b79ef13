from django.urls import path

from billing import team_views

app_name = "teams"
urlpatterns = [
    path("", team_views.team_list, name="list"),
    path("<int:pk>/", team_views.team_page, name="team"),
    path("<int:pk>/budget/", team_views.budget, name="budget"),
    path("<int:pk>/approval/", team_views.approval, name="approval"),
    path("<int:pk>/invite/", team_views.invite, name="invite"),
    path("<int:pk>/members/", team_views.member, name="member"),
]
