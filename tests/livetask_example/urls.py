"""The project's URLs and the docs' example (docs/live-tasks.md)."""

from django.urls import path

from django_celery.urls import urlpatterns as project_urlpatterns

from .tasks import start_counting

urlpatterns = [
    path("count/", start_counting, name="count"),
    *project_urlpatterns,
]
