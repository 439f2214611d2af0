"""A busy database answers 503 with Retry-After, never 500 (docs/decisions/).

Busy: SQLite's writer lock held past the busy timeout, PostgreSQL's pool
exhausted (its timeout), a statement timeout or a dropped connection. Django
raises each as django.db.OperationalError (psycopg's pool timeout included:
Django wraps the errors of getting a connection). A request that meets one,
in its view gets a 503 with Retry-After and one warning line, no traceback;
nothing it meant to store is stored. A view says how it answers then with
`sheds_with` (the form with the person's text, and why); any other gets 503.html.

Django's session middleware, subclassed: its save runs after the view, and
an exception there is turned into a 500 before any outer middleware sees it.
"""

import logging
from collections.abc import Callable
from http import HTTPStatus

from django.contrib.sessions.exceptions import SessionInterrupted
from django.contrib.sessions.middleware import SessionMiddleware
from django.db import OperationalError, connections
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

logger = logging.getLogger(__name__)

# What a shed request is told: try again in this many seconds.
RETRY_AFTER = 5

ShedResponse = Callable[[HttpRequest, int], HttpResponse]


def database_busy(error: BaseException) -> bool:
    """Whether `error` says the database is busy (try again), not that a query is wrong."""
    if not isinstance(error, OperationalError):
        return False
    if connections["default"].vendor == "sqlite":
        return "locked" in str(error)  # "database is locked", "database table is locked"
    return True


def busy_cause(error: BaseException) -> BaseException | None:
    """The busy database error that `error` is, or that caused it (its context chain)."""
    while error is not None:
        if database_busy(error):
            return error
        error = error.__cause__ or error.__context__
    return None


def sheds_with(respond: ShedResponse):
    """A view decorator: `respond(request, retry_after)` answers the view's shed requests."""

    def decorate(view):
        view.shed_response = respond
        return view

    return decorate


def shed(request: HttpRequest, error: BaseException) -> HttpResponse:
    logger.warning("Shed %s %s (503): database busy: %s", request.method, request.path, error)
    request.shed = True  # Django's own line for this 503 is left out (not_shed)
    match = request.resolver_match
    respond = getattr(match.func, "shed_response", None) if match else None
    if respond is not None:
        response = respond(request, RETRY_AFTER)
    else:
        response = render(request, "503.html", {"retry_after": RETRY_AFTER})
    response.status_code = HTTPStatus.SERVICE_UNAVAILABLE
    response["Retry-After"] = str(RETRY_AFTER)
    return response


def not_shed(record: logging.LogRecord) -> bool:
    """A logging filter (settings.LOGGING, django.request): a shed request's one line is ours."""
    return not getattr(getattr(record, "request", None), "shed", False)


class SheddingSessionMiddleware(SessionMiddleware):
    """Django's SessionMiddleware; a busy database in the view sheds the request.

    The session's save after the view never turns the view's answer into
    another: what the view did is committed (a stored feedback), and a 503
    would have the person send it again. A save the database refuses is then
    logged and left out (the session keeps what it held before).
    """

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        return shed(request, exception) if database_busy(exception) else None

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        try:
            return super().process_response(request, response)
        except (OperationalError, SessionInterrupted) as refused:
            # Django's database sessions turn a refused UPDATE into SessionInterrupted.
            error = busy_cause(refused)
            if error is None:
                raise
            if getattr(request, "shed", False):
                return response  # already shed and logged, once
            if response.status_code >= HTTPStatus.BAD_REQUEST:
                return shed(request, error)
            logger.warning(
                "Session of %s %s not saved (%d kept): database busy: %s",
                request.method,
                request.path,
                response.status_code,
                error,
            )
            return response
