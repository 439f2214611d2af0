from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("feedback.urls")),
]

# A body over the size limit discovered while reading it: 413, not 400.
handler400 = "django_celery.errors.bad_request"
