import asyncio
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.http import HttpRequest, parse_cookie
from django.utils import translation

from . import watch
from .publish import BROADCAST_TYPE, EVENT_TYPE
from .watchers import mark_watched

# The socket's words, handed to the page by realtime/context_processors.py.
# Close codes: 4403 after HTTP 403 (not yours: do not come back); 4401 after HTTP 401
# (the session key the handshake carried is gone: come back at once with the current
# cookie); 1000 at a final state (nothing more to come).
CLOSE_FORBIDDEN = 4403
CLOSE_SESSION_CHANGED = 4401
CLOSE_DONE = 1000
# "watch <kind>/<token>" or "watch <kind>/<token> <version shown>": then only a newer
# state is sent. A version longer than VERSION_DIGITS is read as none given.
WATCH_COMMAND = "watch"
VERSION_DIGITS = 18
# The answer to a watch it will not serve: "refused <kind>/<token>".
REFUSED = "refused"
# An HTML comment: a client that swaps frames as HTML swaps nothing.
HEARTBEAT = "<!--heartbeat-->"


class Heartbeat:
    """Sends every open status socket of this process a small frame every
    REALTIME_HEARTBEAT_SECONDS, so a page can tell a quiet socket from a dead one.

    A socket can go silent without closing (a laptop that sleeps, a phone that
    changes networks): the browser is never told, and the page would wait for a
    close that does not come. One task per process walks every socket, rather
    than a timer per socket: at 10,000 sockets that is one wake-up per interval,
    not 10,000.
    """

    # Let other work run between batches of sends.
    BATCH = 500

    def __init__(self) -> None:
        self.sockets: set[AsyncWebsocketConsumer] = set()
        self.task: asyncio.Task | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def join(self, consumer: AsyncWebsocketConsumer) -> None:
        self.sockets.add(consumer)
        loop = asyncio.get_running_loop()
        if self.task is None or self.task.done() or self.loop is not loop:
            self.loop = loop
            self.task = loop.create_task(self.beat())

    def leave(self, consumer: AsyncWebsocketConsumer) -> None:
        self.sockets.discard(consumer)

    async def beat(self) -> None:
        while self.sockets:
            await asyncio.sleep(settings.REALTIME_HEARTBEAT_SECONDS)
            for count, consumer in enumerate(list(self.sockets), start=1):
                if consumer not in self.sockets:
                    continue  # closed meanwhile
                try:
                    await consumer.send(text_data=HEARTBEAT)
                except Exception:  # a socket closing under us: it leaves on disconnect
                    self.sockets.discard(consumer)
                if count % self.BATCH == 0:
                    await asyncio.sleep(0)


heartbeat = Heartbeat()


@dataclass(eq=False)
class Watched:
    """One thing a socket watches."""

    kind: str
    token: str
    group: str
    version: int = -1
    final: bool = False

    @property
    def name(self) -> str:
        return f"{self.kind}/{self.token}"


def session_load(session: Any) -> bool:
    """Load the scope's lazy session now (blocking); False if the key presented
    is no longer in the store (rotated away longer ago than the store's grace,
    expired, or never there).

    The session is read once per socket and then kept: loaded at once, its
    watch rights are those of the key the handshake carried, not of whatever
    that key has become by the first watch. A store forgets a key it does not
    hold (Django sets `session_key` to None on load), which is how a stale key
    is told from a browser that sent none.
    """
    if getattr(session, "session_key", None) is None:
        return True  # no key presented (or a plain mapping, as in tests): nothing to load
    session.keys()  # loads and caches the data
    return session.session_key is not None


def handshake_language(scope: Mapping[str, Any]) -> str:
    """The language Django picks for the handshake as it does for the page's own request
    (LocaleMiddleware): the language cookie, else Accept-Language, else LANGUAGE_CODE.

    A page that switches language reloads, so its new socket speaks the new one.
    """
    headers = dict(scope.get("headers", ()))
    request = HttpRequest()
    request.COOKIES = parse_cookie(headers.get(b"cookie", b"").decode("latin-1"))
    request.META["HTTP_ACCEPT_LANGUAGE"] = headers.get(b"accept-language", b"").decode("latin-1")
    return translation.get_language_from_request(request)


def in_language(html: str | Mapping[str, str], language: str) -> str | None:
    """A published frame's HTML for a reader of `language`: one rendering per watched
    language (realtime.publish.publish_rendering), or one for every reader (a string).
    None when it was not rendered in `language`: no watcher of it was known then
    (realtime/watchers.py), and the next re-read catches up."""
    if isinstance(html, str):
        return html
    return html.get(language)


def resolve_all(
    asked: list[tuple[str, str, int, str]], *, session: Any, language: str
) -> list[watch.Snapshot | None]:
    """Blocking: for each (kind, token, version shown, group), its state if newer
    (watch.resolve), rendered in the socket's language.

    Each group, and the shared groups its kind may join, is marked watched in that
    language first (realtime/watchers.py), so a change committed after this read is
    rendered (and a shared event sent) for this socket.

    A socket's re-reads go to the database thread together, once per round, not
    once per watch: each trip there costs a thread switch and a database
    connection taken from the pool and given back.
    """
    groups = {group for _kind, _token, _version, group in asked}
    groups.update(shared for kind, *_rest in asked for shared in watch.shared_groups(kind))
    mark_watched(groups, language=language)
    with translation.override(language):
        return [
            watch.resolve(kind, token, session=session, newer_than=version)
            for kind, token, version, _group in asked
        ]


class WatchingConsumer(AsyncWebsocketConsumer):
    """Pushes the rendered state of what a socket watches: the current state
    first, then every newer one, and a heartbeat while it is open."""

    resyncing: asyncio.Task | None = None
    # True once the scope's session is in memory (session_load): reading it blocks no more.
    session_loaded = False
    # Watches not final yet in this process, for spreading the re-reads (see resync_delay).
    live: set[Watched] = set()  # noqa: RUF012

    async def websocket_connect(self, message: dict) -> None:
        # Every frame this socket sends is in its page's language.
        self.language = handshake_language(self.scope)
        self.watches: dict[str, Watched] = {}
        self.by_group: dict[str, Watched] = {}
        # Groups shared by many watchers (a Snapshot's `also`), with the names
        # of this socket's watches that asked for each: one membership per socket.
        self.shared: dict[str, set[str]] = {}
        await super().websocket_connect(message)

    async def dispatch(self, message: dict) -> None:
        """Every message goes straight to its handler, without a trip to the database thread.

        Channels' own dispatch first closes old database connections on the
        process's one database thread, for every message: a socket's connect,
        each frame it receives and its disconnect would each wait there behind
        every watch being read, and cost a thread switch. This consumer touches
        the database only through `database_sync_to_async`, which closes old
        connections itself around each call.
        """
        if message["type"] == EVENT_TYPE:
            await self.status_update(message)
        elif message["type"] == BROADCAST_TYPE:
            await self.watch_broadcast(message)
        elif not message["type"].startswith("_") and (
            handler := getattr(self, message["type"].replace(".", "_"), None)  # Channels' rule
        ):
            await handler(message)
        else:
            await super().dispatch(message)  # Channels' error for a type with no handler

    async def websocket_disconnect(self, message: dict) -> None:
        """Channels' own, less its closing of old database connections (see dispatch):
        this consumer keeps its groups itself (drop_watch), never in `groups`."""
        await self.disconnect(message["code"])
        raise StopConsumer

    async def close(self, code=None, reason=None) -> None:
        heartbeat.leave(self)  # nothing more to say, even before the disconnect arrives
        await super().close(code, reason)

    async def add_watch(self, kind: str, token: str, *, shown: int = -1) -> bool:
        """Start watching; False if this session may not watch it (nothing sent then).

        `shown`: the version the watcher shows already (-1: none); the current
        state is sent only if newer.
        """
        session = self.scope.get("session")
        if self.session_loaded:
            # In memory already: naming the group reads nothing, so the one trip to
            # the database thread per watch is the snapshot's.
            group = watch.group_for(kind, token, session=session)
        else:
            group = await database_sync_to_async(watch.group_for)(kind, token, session=session)
        if group is None:
            return False
        # Join first, read second: a change published in between is then
        # delivered after the snapshot (and dropped if the snapshot has it).
        watched = Watched(kind=kind, token=token, group=group, version=shown)
        self.watches[watched.name] = watched
        self.by_group[group] = watched
        await self.channel_layer.group_add(group, self.channel_name)
        (snapshot,) = await self.resolve([watched])
        if snapshot is None:  # valid token, but nothing to watch (deleted)
            await self.drop_watch(watched)
            return False
        await self.forward(watched, snapshot.html, snapshot.version, snapshot.final)
        if snapshot.final:  # sent now, or shown already: nothing more to watch
            await self.drop_watch(watched)
            return True
        for shared in snapshot.also:
            if shared not in self.shared:
                self.shared[shared] = set()
                await self.channel_layer.group_add(shared, self.channel_name)
            self.shared[shared].add(watched.name)
        WatchingConsumer.live.add(watched)
        if self.resyncing is None:
            self.resyncing = asyncio.create_task(self.resync())
        return True

    async def drop_watch(self, watched: Watched) -> None:
        WatchingConsumer.live.discard(watched)
        if self.watches.pop(watched.name, None) is None:
            return
        self.by_group.pop(watched.group, None)
        await self.channel_layer.group_discard(watched.group, self.channel_name)
        for shared, names in list(self.shared.items()):
            names.discard(watched.name)
            if not names:
                del self.shared[shared]
                await self.channel_layer.group_discard(shared, self.channel_name)

    async def resolve(self, watching: list[Watched]) -> list[watch.Snapshot | None]:
        # The session (from asgi.py's SessionMiddlewareStack) says who is asking.
        asked = [(w.kind, w.token, w.version, w.group) for w in watching]
        return await database_sync_to_async(resolve_all)(
            asked, session=self.scope.get("session"), language=self.language
        )

    async def resync(self) -> None:
        """Re-read the state now and then, and forward it if it is newer.

        channels-redis delivers at most once: an update lost on the way (Redis
        restarting, a full channel) would otherwise leave the page behind for
        good. Versions make this cheap: an unchanged state is not sent again.
        """
        while any(not watched.final for watched in self.watches.values()):
            await asyncio.sleep(self.resync_delay())
            watching = [w for w in self.watches.values() if not w.final]
            for watched, snapshot in zip(watching, await self.resolve(watching), strict=True):
                if self.watches.get(watched.name) is not watched:
                    continue  # dropped while it was read (final, or the socket closing)
                if snapshot is None:  # the token expired meanwhile
                    await self.refused(watched)
                    continue
                await self.forward(watched, snapshot.html, snapshot.version, snapshot.final)
        self.resyncing = None

    @classmethod
    def resync_delay(cls) -> float:
        """Seconds until the next re-read: REALTIME_RESYNC_SECONDS, or longer when many watch.

        Every re-read goes through the one thread Channels gives database work,
        which also serves every new socket: at 5 s each, 5,000 watchers asked
        for 1,000 re-reads a second, more than it can do, and new sockets
        starved (docs/benchmarks-notes.md). So the re-reads of a process are held to
        REALTIME_RESYNC_PER_SECOND in all, and jittered so that sockets opened
        together do not re-read together. Never later than the interval asks.
        """
        interval = min(
            max(
                settings.REALTIME_RESYNC_SECONDS,
                len(cls.live) / settings.REALTIME_RESYNC_PER_SECOND,
            ),
            settings.REALTIME_WATCHED_SECONDS / 2,  # re-marked before its mark expires
        )
        return interval * random.uniform(0.5, 1.0)

    async def disconnect(self, code: int) -> None:
        heartbeat.leave(self)
        if self.resyncing is not None:
            self.resyncing.cancel()
        for watched in list(getattr(self, "watches", {}).values()):
            await self.drop_watch(watched)

    async def status_update(self, event: dict) -> None:
        if watched := self.by_group.get(event["group"]):
            await self.forward(watched, event["html"], event["version"], event["final"])

    async def watch_broadcast(self, event: dict) -> None:
        """One frame for the socket, however many of its watches share the group."""
        if self.shared:
            await self.send(text_data=event["html"])

    async def forward(
        self, watched: Watched, html: str | Mapping[str, str], version: int, final: bool
    ) -> None:
        if version <= watched.version or watched.final:
            return  # an older update arriving late never overwrites a newer one
        if (text := in_language(html, self.language)) is None:
            return  # not rendered for this language: the next re-read sends it
        watched.version = version
        await self.send(text_data=text)
        if final:
            watched.final = True
            await self.reached_final(watched)

    async def reached_final(self, watched: Watched) -> None:
        await self.drop_watch(watched)

    async def refused(self, watched: Watched) -> None:
        """A watch no longer allowed (its token expired): say so, by name."""
        await self.drop_watch(watched)
        await self.send(text_data=f"{REFUSED} {watched.name}")


class StatusConsumer(WatchingConsumer):
    """One watched object per socket, named by the path (/ws/<kind>/<token>/);
    closed normally at its final state. Frames from the browser are ignored."""

    async def connect(self) -> None:
        kwargs = self.scope["url_route"]["kwargs"]
        # Accept before closing: a refused handshake makes a browser retry
        # forever, a 4403 close ends it.
        await self.accept()
        heartbeat.join(self)
        if not await self.add_watch(kwargs["kind"], kwargs["token"]):
            await self.close(code=CLOSE_FORBIDDEN)

    async def reached_final(self, watched: Watched) -> None:
        await super().reached_final(watched)
        await self.close(code=CLOSE_DONE)

    async def refused(self, watched: Watched) -> None:
        await self.drop_watch(watched)
        await self.close(code=CLOSE_FORBIDDEN)


class PageConsumer(WatchingConsumer):
    """One socket for a whole page (/ws/watch/): the page sends "watch <kind>/<token>"
    (and the version it shows) for each thing it shows, now or later, and gets each
    one's state over it: the current one if newer than that, then every newer one.

    The socket stays open when one watch ends (final, refused): the page may
    add more. A frame that is not a watch command is ignored.
    """

    async def connect(self) -> None:
        # The session key rotates once, when a first submission (in another tab,
        # perhaps) gives the session its watcher key; loaded now, the window is the
        # handshake alone. A key already gone cannot watch anything: the page is told
        # to reconnect with its current cookie, instead of having each watch refused.
        # A stale or planted key gains nothing either way.
        # Accepted first: a busy database thread must not hold the handshake
        # past daphne's timeout, and no watch is read before connect returns.
        self.session_changed = False
        await self.accept()
        self.session_changed = not await database_sync_to_async(session_load)(
            self.scope.get("session")
        )
        if self.session_changed:
            await self.close(code=CLOSE_SESSION_CHANGED)
        else:
            self.session_loaded = True
            heartbeat.join(self)  # a page counts a heartbeat as a socket that held (live.js)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.session_changed:
            return  # closing: a frame sent before the close arrived gets no answer
        command, _, watching = (text_data or "").partition(" ")
        name, _, shown = watching.partition(" ")
        kind, _, token = name.partition("/")
        if command != WATCH_COMMAND or not kind or not token or name in self.watches:
            return
        given = shown.isascii() and shown.isdigit() and len(shown) <= VERSION_DIGITS
        version = int(shown) if given else -1
        full = len(self.watches) >= settings.REALTIME_WATCHES_PER_SOCKET
        if full or not await self.add_watch(kind, token, shown=version):
            await self.send(text_data=f"{REFUSED} {name}")


class NoSuchSocketConsumer(AsyncWebsocketConsumer):
    """Refuses the handshake of a websocket path we do not serve."""

    async def connect(self) -> None:
        await self.close()
