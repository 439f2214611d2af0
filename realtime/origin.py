"""Websockets only from pages of this site: scheme, host and port of the Origin checked.

Channels' AllowedHostsOriginValidator compares the Origin's host with
ALLOWED_HOSTS only, so `ftp://127.0.0.1` or a page on another port of an
allowed host could open a status socket. Here the Origin must be an http(s)
origin whose host is allowed and whose host and port are those the browser
connected to (the Host header), as for a same-origin request; or one of
CSRF_TRUSTED_ORIGINS, for a proxy that does not pass the original Host.
Anything else is refused at the handshake (HTTP 403).
"""

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _allowed_hosts() -> list[str]:
    if settings.DEBUG and not settings.ALLOWED_HOSTS:
        return [".localhost", "127.0.0.1", "[::1]"]  # as Django allows in debug
    return settings.ALLOWED_HOSTS


def same_origin(origin: str | None, host: str | None) -> bool:
    """Whether a page at `origin` is of the site that `host` (the Host header) names."""
    if not origin or not host:
        return False
    if origin.rstrip("/") in settings.CSRF_TRUSTED_ORIGINS:
        return True
    try:
        parts = urlsplit(origin)
        origin_port = parts.port or DEFAULT_PORTS.get(parts.scheme)
        # The Host header parsed as a URL's authority: host name and port, as the browser sent.
        target = urlsplit(f"//{host}")
        host_port = target.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return False
    if parts.scheme not in DEFAULT_PORTS or parts.path not in ("", "/") or parts.username:
        return False
    if target.username or target.path or target.query or target.fragment or not parts.hostname:
        return False
    origin_host = parts.hostname  # lower case, without the brackets of an IPv6 address
    written = f"[{origin_host}]" if ":" in origin_host else origin_host  # as in a Host header
    if not validate_host(written, _allowed_hosts()):
        return False
    # No port in Host: the browser connected to the default port of its scheme.
    return (target.hostname or "").rstrip(".") == origin_host and host_port == origin_port


class SameOriginValidator:
    """ASGI middleware for websockets: refuses a handshake whose Origin is not `same_origin`."""

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        if same_origin(_header(scope, b"origin"), _header(scope, b"host")):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)
