"""The project's URLs plus one view that crashes, to see the 500 page."""

from django.urls import path

from django_celery.urls import handler400, urlpatterns as project_urlpatterns  # noqa: F401


def crash(request):
    raise RuntimeError("a secret detail that must not reach the browser")


urlpatterns = [path("crash/", crash), *project_urlpatterns]
