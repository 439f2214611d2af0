"""A client that sends its request headers slowly is disconnected after a while.

Twisted's idle timeout (twelve hours in daphne) restarts with every byte, so a
connection that trickles a header line every few seconds was never closed:
enough of them hold every file descriptor daphne has. Here a request's
headers must all arrive within `seconds` of the connection opening (or of
the previous response, on a kept-alive connection); otherwise the connection
is dropped. A body is not bounded by this (its size is, in body_limit.py).
"""

import functools


def limit_daphne_header_time(seconds: float | None) -> None:
    """Drop a connection whose request headers take longer than `seconds` (no-op without daphne)."""
    if not seconds:
        return
    try:
        import daphne.http_protocol  # noqa: F401  (only under daphne)
        from twisted.web.http import HTTPChannel
    except ImportError:
        return
    if hasattr(HTTPChannel, "header_time_limit"):
        HTTPChannel.header_time_limit = seconds
        return
    HTTPChannel.header_time_limit = seconds

    def arm(channel: HTTPChannel) -> None:
        from twisted.internet import reactor

        disarm(channel)
        transport = channel.transport
        drop = getattr(transport, "abortConnection", transport.loseConnection)
        channel._header_deadline = reactor.callLater(channel.header_time_limit, drop)

    def disarm(channel: HTTPChannel) -> None:
        deadline = getattr(channel, "_header_deadline", None)
        if deadline is not None and deadline.active():
            deadline.cancel()
        channel._header_deadline = None

    def after(method, action):
        @functools.wraps(method)
        def wrapper(self, *args, **kwargs):
            result = method(self, *args, **kwargs)
            action(self)
            return result

        return wrapper

    def before(method, action):
        @functools.wraps(method)
        def wrapper(self, *args, **kwargs):
            action(self)
            return method(self, *args, **kwargs)

        return wrapper

    def rearm_if_open(channel: HTTPChannel) -> None:
        if channel.persistent and channel.transport is not None and channel.connected:
            arm(channel)

    HTTPChannel.connectionMade = after(HTTPChannel.connectionMade, arm)
    HTTPChannel.allHeadersReceived = before(HTTPChannel.allHeadersReceived, disarm)
    HTTPChannel.requestDone = after(HTTPChannel.requestDone, rearm_if_open)
    HTTPChannel.connectionLost = before(HTTPChannel.connectionLost, disarm)
