from django.conf import settings
from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    # Browsers ask for it on every page without an icon link (the admin's, say).
    path("favicon.ico", RedirectView.as_view(url=static("favicon.ico"), permanent=True)),
    path("admin/", admin.site.urls),
    path("healthz", include("health.urls")),
    # The language selector posts to Django's set_language (a cookie).
    path("i18n/", include("django.conf.urls.i18n")),
    path("tasks/", include("livetasks.urls")),
    path("", include("feedback.urls")),
]

# A body over the size limit discovered while reading it: 413, not 400.
handler400 = "web.errors.bad_request"

if settings.DEBUG:
    # Development only: the emails the local SMTP server of `make run` received.
    # Not routed at all in production.
    urlpatterns.insert(0, path("outbox/", include("outbox.urls")))
