from django.urls import path

from . import views

app_name = "livetasks"

urlpatterns = [
    path("<str:token>/", views.task_card, name="card"),
    path("<str:token>/cancel", views.task_cancel, name="cancel"),
    path("<str:token>/download", views.task_download, name="download"),
]
