import asyncio
import random

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from . import watch

# Close codes. 4403 mirrors HTTP 403; a normal close (1000) at a final state
# tells the htmx ws extension not to reconnect.
CLOSE_FORBIDDEN = 4403
CLOSE_DONE = 1000


class StatusConsumer(AsyncWebsocketConsumer):
    """Pushes one watched object's rendered status to the browser."""

    group: str | None = None
    also: tuple[str, ...] = ()
    finished = False
    version = -1
    resyncing: asyncio.Task | None = None
    # Watchers open in this process, for spreading the re-reads (see resync_delay).
    live = 0

    async def snapshot(self) -> watch.Snapshot | None:
        kwargs = self.scope["url_route"]["kwargs"]
        # The session (from asgi.py's SessionMiddlewareStack) says who is asking.
        return await database_sync_to_async(watch.resolve)(
            kwargs["kind"], kwargs["token"], session=self.scope.get("session")
        )

    async def connect(self) -> None:
        kwargs = self.scope["url_route"]["kwargs"]
        group = await database_sync_to_async(watch.group_for)(
            kwargs["kind"], kwargs["token"], session=self.scope.get("session")
        )
        # Accept before closing: a refused handshake makes the htmx extension
        # retry forever, a 4403 close ends it.
        await self.accept()
        if group is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        # Join first, read second: a change published in between is then
        # delivered after the snapshot (and dropped if the snapshot has it).
        self.group = group
        await self.channel_layer.group_add(self.group, self.channel_name)
        snapshot = await self.snapshot()
        if snapshot is None:  # valid token, but nothing to watch (deleted)
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.forward(snapshot.html, snapshot.version, snapshot.final)
        if not snapshot.final:
            self.also = snapshot.also
            for group in self.also:
                await self.channel_layer.group_add(group, self.channel_name)
            StatusConsumer.live += 1
            self.resyncing = asyncio.create_task(self.resync())

    async def resync(self) -> None:
        """Re-read the state now and then, and forward it if it is newer.

        channels-redis delivers at most once: an update lost on the way (Redis
        restarting, a full channel) would otherwise leave the page behind for
        good. Versions make this cheap: an unchanged state is not sent again.
        """
        while True:
            await asyncio.sleep(self.resync_delay())
            snapshot = await self.snapshot()
            if snapshot is None:  # the token expired meanwhile
                await self.close(code=CLOSE_FORBIDDEN)
                return
            await self.forward(snapshot.html, snapshot.version, snapshot.final)
            if snapshot.final:
                return

    @classmethod
    def resync_delay(cls) -> float:
        """Seconds until the next re-read: REALTIME_RESYNC_SECONDS, or longer when many watch.

        Every re-read goes through the one thread Channels gives database work,
        which also serves every new socket: at 5 s each, 5,000 watchers asked
        for 1,000 re-reads a second, more than it can do, and new sockets
        starved (docs/benchmarks.md). So the re-reads of a process are held to
        REALTIME_RESYNC_PER_SECOND in all, and jittered so that sockets opened
        together do not re-read together. Never later than the interval asks.
        """
        interval = max(
            getattr(settings, "REALTIME_RESYNC_SECONDS", 5.0),
            cls.live / getattr(settings, "REALTIME_RESYNC_PER_SECOND", 50.0),
        )
        return interval * random.uniform(0.5, 1.0)

    async def disconnect(self, code: int) -> None:
        if self.resyncing is not None:
            self.resyncing.cancel()
            StatusConsumer.live -= 1
        joined = [self.group, *self.also] if self.group is not None else []
        for group in joined:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def status_update(self, event: dict) -> None:
        await self.forward(event["html"], event["version"], event["final"])

    async def watch_broadcast(self, event: dict) -> None:
        # After the current state, never before it; nothing once final (closing).
        if self.version >= 0 and not self.finished:
            await self.send(text_data=event["html"])

    async def forward(self, html: str, version: int, final: bool) -> None:
        if version <= self.version:
            return  # an older update arriving late never overwrites a newer one
        self.version = version
        await self.send(text_data=html)
        if final:
            self.finished = True
            await self.close(code=CLOSE_DONE)


class NoSuchSocketConsumer(AsyncWebsocketConsumer):
    """Refuses the handshake of a websocket path we do not serve."""

    async def connect(self) -> None:
        await self.close()
