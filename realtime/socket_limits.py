"""Caps on status sockets, so that one client cannot exhaust a daphne process.

An ASGI middleware around the websocket application, before the session is
loaded or anything is read from the database:

- at most REALTIME_MAX_SOCKETS_PER_SESSION open sockets per session cookie and
  REALTIME_MAX_SOCKETS_PER_CLIENT per client address, in this process;
- at most REALTIME_CONNECTS_PER_SECOND new sockets per second per client
  address, counted over a moving window of CONNECT_BURST seconds (the `limits`
  library, in memory), so a connect/close flood is turned away cheaply and real
  watchers keep their turn.

Over a cap, the socket is accepted and closed at once with CLOSE_TOO_MANY
(4429, after HTTP 429): a refused handshake would make a browser
retry for ever, while a 4xxx close ends its retries and the page falls back to
polling the status over HTTP every few seconds. The counts are per process.
"""

from collections import Counter
from collections.abc import Callable

from django.conf import settings
from django.http import parse_cookie
from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

CLOSE_TOO_MANY = 4429
CONNECT_BURST = 3  # seconds' worth of connects a client may make at once


def session_cookie(scope: dict) -> str | None:
    """The session key as Channels' session middleware will read it (Django's parse_cookie)."""
    cookie = dict(scope.get("headers", ())).get(b"cookie", b"")
    return parse_cookie(cookie.decode("latin-1")).get(settings.SESSION_COOKIE_NAME)


class SocketLimits:
    """ASGI middleware: the caps above. `client_address(scope)` names the client."""

    def __init__(self, application, *, client_address: Callable[[dict], str]) -> None:
        self.application = application
        self.client_address = client_address
        self.open_per_client: Counter[str] = Counter()
        self.open_per_session: Counter[str] = Counter()
        self.connects = MovingWindowRateLimiter(MemoryStorage())

    def admit(self, client: str, session: str | None) -> bool:
        if self.open_per_client[client] >= settings.REALTIME_MAX_SOCKETS_PER_CLIENT:
            return False
        if session and self.open_per_session[session] >= settings.REALTIME_MAX_SOCKETS_PER_SESSION:
            return False
        burst = max(1, round(settings.REALTIME_CONNECTS_PER_SECOND * CONNECT_BURST))
        return self.connects.hit(RateLimitItemPerSecond(burst, CONNECT_BURST), client)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            return await self.application(scope, receive, send)
        client = self.client_address(scope)
        session = session_cookie(scope)
        if not self.admit(client, session):
            return await refuse(receive, send)
        self.open_per_client[client] += 1
        if session:
            self.open_per_session[session] += 1
        try:
            return await self.application(scope, receive, send)
        finally:
            self.open_per_client[client] -= 1
            if not self.open_per_client[client]:
                del self.open_per_client[client]
            if session:
                self.open_per_session[session] -= 1
                if not self.open_per_session[session]:
                    del self.open_per_session[session]


async def refuse(receive, send) -> None:
    """Accept, then close with CLOSE_TOO_MANY (no data), and wait for the client to go."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": CLOSE_TOO_MANY})
