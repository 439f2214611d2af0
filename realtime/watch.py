"""Who may watch what: the small interface between the transport and a domain.

A domain registers a resolver per kind of watch token. The resolver turns a
token, and the session of whoever presents it, into a `Snapshot` of the
current state (or None when that session may not watch it), so the transport
never needs to know what is being watched or how access is decided.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Snapshot:
    group: str  # the channel-layer group that carries updates
    html: str  # the current state, rendered
    version: int  # grows with every change; older updates are dropped
    final: bool  # no further updates will come


class Resolver(Protocol):
    def __call__(self, token: str, *, session: Mapping[str, Any]) -> Snapshot | None: ...


_resolvers: dict[str, Resolver] = {}

NO_SESSION: Mapping[str, Any] = {}


def register(kind: str, resolver: Resolver) -> None:
    _resolvers[kind] = resolver


def resolve(kind: str, token: str, *, session: Mapping[str, Any] | None) -> Snapshot | None:
    """Blocking (the resolver may read the database and the session store)."""
    resolver = _resolvers.get(kind)
    if resolver is None:
        return None
    return resolver(token, session=NO_SESSION if session is None else session)
