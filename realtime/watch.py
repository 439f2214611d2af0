"""Who may watch what: the small interface between the transport and a domain.

A domain registers a resolver per kind of watch token. The resolver turns a
token into a `Snapshot` of the current state (or None when the token is not
valid), so the transport never needs to know what is being watched.
"""

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Snapshot:
    group: str  # the channel-layer group that carries updates
    html: str  # the current state, rendered
    version: int  # grows with every change; older updates are dropped
    final: bool  # no further updates will come


Resolver = Callable[[str], Snapshot | None]

_resolvers: dict[str, Resolver] = {}


def register(kind: str, resolver: Resolver) -> None:
    _resolvers[kind] = resolver


def resolve(kind: str, token: str) -> Snapshot | None:
    resolver = _resolvers.get(kind)
    if resolver is None:
        return None
    return resolver(token)
