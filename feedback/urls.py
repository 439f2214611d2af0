from django.urls import path

from . import views

app_name = "feedback"

urlpatterns = [
    path("", views.feedback_index, name="index"),
    path("feedback/<str:token>/", views.feedback_status, name="status"),
    path("feedback/<str:token>/cancel/", views.feedback_cancel, name="cancel"),
]
