"""Who may watch what: the small interface between the transport and a domain.

A domain registers, per kind of watch token, two functions of a token and the
session of whoever presents it: `group`, cheap, names the channel-layer group
that carries updates (the token alone decides it), and `snapshot` reads the
current state. Either answers None when that session may not watch. So the
transport never needs to know what is being watched or how access is
decided, and it can join the group before it reads: nothing published in
between is missed.

`group` reads nothing but the session (never the database): once the session
is in memory it does not block, and a socket that loaded its session at the
handshake names the group on its event loop, going to the database thread
once per watch, for the snapshot.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Snapshot:
    """What a watch is answered with first: a row's current state, rendered."""

    group: str  # the channel-layer group that carries updates
    html: str  # the current state, rendered
    version: int  # grows with every change; older updates are dropped
    final: bool  # no further updates will come
    # More groups to join while watching: broadcasts shared by many watchers
    # (realtime.publish.broadcast), never a group of their own per watcher.
    also: tuple[str, ...] = ()


class Resolver(Protocol):
    # newer_than: the version the watcher already shows, -1 for a first read (see resolve).
    def __call__(
        self, token: str, *, session: Mapping[str, Any], newer_than: int = -1
    ) -> Snapshot | None: ...


class GroupResolver(Protocol):
    def __call__(self, token: str, *, session: Mapping[str, Any]) -> str | None: ...


@dataclass(frozen=True)
class Watchable:
    group: GroupResolver
    snapshot: Resolver
    also: tuple[str, ...] = ()


_kinds: dict[str, Watchable] = {}

NO_SESSION: Mapping[str, Any] = {}


def register(
    kind: str, *, group: GroupResolver, snapshot: Resolver, also: tuple[str, ...] = ()
) -> None:
    """Make tokens of `kind` watchable ("watch <kind>/<token>" on the page's socket): `group`
    names a token's channel-layer group, `snapshot` reads its current state; either answers
    None to refuse. `also`: every shared group a snapshot of this kind may name in its
    `also` (they are marked watched before the read, realtime/watchers.py). Call it from
    an AppConfig.ready()."""
    _kinds[kind] = Watchable(group=group, snapshot=snapshot, also=also)


def shared_groups(kind: str) -> tuple[str, ...]:
    """The shared groups a watcher of `kind` may join (register's `also`)."""
    watchable = _kinds.get(kind)
    return () if watchable is None else watchable.also


def group_for(kind: str, token: str, *, session: Mapping[str, Any] | None) -> str | None:
    """Blocking only while the session is not loaded (it may be read from its store)."""
    watchable = _kinds.get(kind)
    if watchable is None:
        return None
    return watchable.group(token, session=NO_SESSION if session is None else session)


def resolve(
    kind: str, token: str, *, session: Mapping[str, Any] | None, newer_than: int = -1
) -> Snapshot | None:
    """Blocking (the resolver may read the database and the session store).

    `newer_than`: the version the watcher already shows (a re-read). The resolver
    may then leave `html` empty for a state that is not newer: it is not sent.
    """
    watchable = _kinds.get(kind)
    if watchable is None:
        return None
    session = NO_SESSION if session is None else session
    return watchable.snapshot(token, session=session, newer_than=newer_than)
