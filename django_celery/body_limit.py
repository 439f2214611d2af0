"""Request bodies refused by size before they are held in memory.

Django's DATA_UPLOAD_MAX_MEMORY_SIZE protects parsing, not memory: daphne
reads a whole body, then queues all of it (in 8 KiB messages) for the
application at once, and Django's ASGI handler reads it all again before any
middleware runs. A 200 MiB POST took daphne's memory up by as much. So:

- `limit_daphne_request_bodies` makes daphne keep at most the limit (plus one
  byte, to tell "too large" from "exactly the limit") of any body: the rest is
  read off the socket and dropped, so the client still gets its answer;
- `BodySizeLimitMiddleware`, around the HTTP application, refuses a body whose
  declared Content-Length is over the limit without reading it, and counts the
  bytes of a body without one (chunked) as they arrive, stopping at the limit.

A refused request reaches Django with an empty body and `scope[SCOPE_TOO_LARGE]`
set, and `django_celery.errors.RequestSizeLimitMiddleware` answers it with the
413 page, with every header the other middleware adds.
"""

import functools
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SCOPE_TOO_LARGE = "django_celery.body_too_large"


def declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # not a number: Django's own reading decides
    return None


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, *, limit: Callable[[], int | None]) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limit()
        if scope["type"] != "http" or limit is None:
            return await self.app(scope, receive, send)
        declared = declared_length(scope)
        if declared is not None and declared > limit:
            return await self.app({**scope, SCOPE_TOO_LARGE: True}, _empty_body(receive), send)
        received: list[Message] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                received.append(message)
                break
            size += len(message.get("body", b""))
            if size > limit:
                return await self.app({**scope, SCOPE_TOO_LARGE: True}, _empty_body(receive), send)
            received.append(message)
            if not message.get("more_body", False):
                break
        return await self.app(scope, _replay(received, receive), send)


def _empty_body(receive: Receive) -> Receive:
    sent = False

    async def empty() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        while True:  # the rest of the body is dropped as it comes: only a disconnect matters
            message = await receive()
            if message["type"] != "http.request":
                return message

    return empty


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


def limit_daphne_request_bodies(limit: int | None) -> None:
    """Make daphne keep at most `limit` + 1 bytes of a request body (no-op without daphne)."""
    if limit is None:
        return
    try:
        from daphne.http_protocol import WebRequest
    except ImportError:
        return
    if getattr(WebRequest.handleContentChunk, "keeps_at_most", None) is not None:
        WebRequest.handleContentChunk.keeps_at_most = limit + 1
        return
    got_length = WebRequest.gotLength
    handle_content_chunk = WebRequest.handleContentChunk

    @functools.wraps(got_length)
    def bounded_got_length(self, length: int | None) -> None:
        keep = bounded_handle_content_chunk.keeps_at_most
        # A small in-memory buffer rather than a temporary file of the declared size.
        got_length(self, keep if length is None else min(length, keep))

    @functools.wraps(handle_content_chunk)
    def bounded_handle_content_chunk(self, data: bytes) -> None:
        room = bounded_handle_content_chunk.keeps_at_most - self.content.tell()
        if room > 0:
            handle_content_chunk(self, data[:room])

    bounded_handle_content_chunk.keeps_at_most = limit + 1  # type: ignore[attr-defined]
    WebRequest.gotLength = bounded_got_length
    WebRequest.handleContentChunk = bounded_handle_content_chunk
