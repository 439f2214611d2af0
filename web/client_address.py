"""Who is asking: the client's address, for the rate limit and the socket caps.

Read the same way in every deployment shape, and never an error:

- direct (TRUSTED_PROXY_HOPS=0): the peer of the TCP connection;
- behind N proxies that each append the address they saw to X-Forwarded-For
  (TRUSTED_PROXY_HOPS=N): the N-th entry from the right, the one the outermost
  trusted proxy wrote. Entries further left come from the client and are
  never believed (rotating them must not walk past a limit). daphne's own
  `--proxy-headers` believes the leftmost one, so it is not used here;
- daphne on a unix socket has no peer address: the proxy's entry is then the
  only one, so set TRUSTED_PROXY_HOPS.

An address that is missing or cannot be parsed ("unknown", garbage) counts
as UNKNOWN: all such clients share one budget, rather than each getting a new
one or the request failing. An IPv6 address stands for its /64, which one
subscriber usually holds whole.
"""

import ipaddress
from collections.abc import Iterable

from django.conf import settings
from django.http import HttpRequest

UNKNOWN = "unknown"
IPV6_PREFIX = 64


def parse_address(value: str | None) -> str | None:
    """'1.2.3.4', '1.2.3.4:5678', '[2001:db8::1]:443', '"2001:db8::1"' -> the address; else None."""
    if not value:
        return None
    value = value.strip().strip('"').strip()
    if value.startswith("["):  # [v6] or [v6]:port
        value = value[1 : value.find("]")] if "]" in value else ""
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if address.version == 6:
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/{IPV6_PREFIX}", strict=False))
    return str(address)


def client_address(*, peer: str | None, forwarded_for: Iterable[str], trusted_hops: int) -> str:
    """The client's address (or UNKNOWN), from the peer and the X-Forwarded-For header values."""
    if trusted_hops > 0:
        entries = [entry for value in forwarded_for for entry in value.split(",")]
        if len(entries) >= trusted_hops:
            found = parse_address(entries[-trusted_hops])
            if found is not None:
                return found
    return parse_address(peer) or UNKNOWN


def request_client_address(request: HttpRequest) -> str:
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    return client_address(
        peer=request.META.get("REMOTE_ADDR"),
        forwarded_for=[forwarded] if forwarded is not None else [],
        trusted_hops=settings.TRUSTED_PROXY_HOPS,
    )


def scope_client_address(scope: dict) -> str:
    """The same, from an ASGI scope (a websocket's, say)."""
    client = scope.get("client")
    return client_address(
        peer=client[0] if client else None,
        forwarded_for=[
            value.decode("latin-1")
            for name, value in scope.get("headers", ())
            if name.lower() == b"x-forwarded-for"
        ],
        trusted_hops=settings.TRUSTED_PROXY_HOPS,
    )
