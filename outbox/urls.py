from django.urls import path

from . import views

app_name = "outbox"

urlpatterns = [
    path("", views.outbox_index, name="index"),
    path("<str:anchor>/html/", views.outbox_html, name="html"),
]
