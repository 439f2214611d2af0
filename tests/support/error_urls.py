"""The project's URLs plus one view that crashes, to see the 500 page."""

from django.urls import path

from django_celery.urls import handler400  # noqa: F401
from django_celery.urls import urlpatterns as project_urlpatterns


def crash(request):
    raise RuntimeError("a secret detail that must not reach the browser")


urlpatterns = [path("crash/", crash), *project_urlpatterns]
