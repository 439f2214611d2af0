from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from . import watch

# Close codes. 4403 mirrors HTTP 403; a normal close (1000) at a final state
# tells the htmx ws extension not to reconnect.
CLOSE_FORBIDDEN = 4403
CLOSE_DONE = 1000


class StatusConsumer(AsyncWebsocketConsumer):
    """Pushes one watched object's rendered status to the browser."""

    group: str | None = None
    version = -1

    async def connect(self) -> None:
        kwargs = self.scope["url_route"]["kwargs"]
        # The session (from asgi.py's AuthMiddlewareStack) says who is asking.
        snapshot = await database_sync_to_async(watch.resolve)(
            kwargs["kind"], kwargs["token"], session=self.scope.get("session")
        )
        # Accept before closing: a refused handshake makes the htmx extension
        # retry forever, a 4403 close ends it.
        await self.accept()
        if snapshot is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.group = snapshot.group
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.forward(snapshot.html, snapshot.version, snapshot.final)

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def status_update(self, event: dict) -> None:
        await self.forward(event["html"], event["version"], event["final"])

    async def forward(self, html: str, version: int, final: bool) -> None:
        if version <= self.version:
            return  # an older update arriving late never overwrites a newer one
        self.version = version
        await self.send(text_data=html)
        if final:
            await self.close(code=CLOSE_DONE)


class NoSuchSocketConsumer(AsyncWebsocketConsumer):
    """Refuses the handshake of a websocket path we do not serve."""

    async def connect(self) -> None:
        await self.close()
