"""Error answers that are plain, styled pages and never a traceback.

Django renders 403/404/500 from templates/<code>.html itself; this module adds
the one it does not know: 413 for a body larger than DATA_UPLOAD_MAX_MEMORY_SIZE.
"""

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views import defaults

from .body_limit import SCOPE_TOO_LARGE

TOO_LARGE = 413


def request_too_large(request: HttpRequest) -> HttpResponse:
    return render(request, "413.html", status=TOO_LARGE)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler400: a body that turned out too large while being read is a 413, not a 400."""
    if isinstance(exception, RequestDataTooBig):
        return request_too_large(request)
    return defaults.bad_request(request, exception)


class RequestSizeLimitMiddleware:
    """Refuse a body whose declared length is over the limit, before anything reads it.

    Django only raises RequestDataTooBig once the body is read (and, with
    DEBUG on, answers it with a 400 debug page); checking Content-Length up
    front gives the same clear 413 in every mode and also covers multipart
    file parts, which DATA_UPLOAD_MAX_MEMORY_SIZE does not count.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0  # not a number: Django's own body reading decides
        # Refused by size at the ASGI level (django_celery/body_limit.py), unread.
        refused = getattr(request, "scope", {}).get(SCOPE_TOO_LARGE, False)
        if refused or (limit is not None and declared > limit):
            return request_too_large(request)
        return self.get_response(request)
