"""Error answers that are plain, styled pages and never a traceback.

Django renders 403/404/500 from templates/<code>.html itself; this module adds
the one it does not know: 413 for a body larger than DATA_UPLOAD_MAX_MEMORY_SIZE.
"""

import codecs
from collections.abc import Callable
from http import HTTPStatus

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views import defaults

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
    file parts, which DATA_UPLOAD_MAX_MEMORY_SIZE does not count. In production HAProxy
    refuses such a body before daphne reads it (deploy/haproxy.cfg).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0  # not a number: Django's own body reading decides
        if limit is not None and declared > limit:
            return request_too_large(request)
        return self.get_response(request)


FORM_CONTENT_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def readable_charset(request: HttpRequest) -> bool:
    """Whether the body's declared charset (if any) is one the app reads.

    Django reads a form body only as UTF-8 and raises BadRequest for anything
    else, but without marking the body as unparsable: the error page then read
    it again and the answer was a 500. An unknown charset went the same way.
    """
    charset = request.content_params.get("charset")
    if charset is None:
        return True
    try:
        name = codecs.lookup(charset).name
    except LookupError:
        return False
    return request.content_type not in FORM_CONTENT_TYPES or name in ("utf-8", "ascii")


class RequestEncodingMiddleware:
    """Answer 400 to a body in a charset the app does not read, before anything parses it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not readable_charset(request):
            return render(request, "400.html", status=HTTPStatus.BAD_REQUEST)
        return self.get_response(request)
