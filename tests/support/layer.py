"""Listening to a channel-layer group from a sync test, whichever channels-redis layer is set.

The pub/sub layer (the default, see docs/benchmarks-notes.md) keeps its channels per
event loop: `new_channel`, `group_add` and `receive` must all run on the same
loop, which separate `async_to_sync` calls would not. A listener keeps one
loop, on its own thread, for its whole life.
"""

import asyncio
import concurrent.futures
import contextlib
import threading

from channels.layers import get_channel_layer
from django.conf import settings

from realtime.watchers import mark_watched

_open: set["LayerListener"] = set()


def close_all() -> None:
    """Close every listener still open (conftest does it after each test)."""
    for listener in list(_open):
        listener.close()


class LayerListener:
    """A channel in `group`, watching it in every language (realtime/watchers.py, or a
    rendering publisher would skip it): the test sees what is published to it."""

    def __init__(self, group: str) -> None:
        _open.add(self)
        self.group = group
        self.layer = get_channel_layer()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._next: concurrent.futures.Future | None = None
        self.channel = self._run(self.layer.new_channel())
        self._run(self.layer.group_add(group, self.channel))
        for language, _name in settings.LANGUAGES:
            mark_watched([group], language=language)

    def _run(self, coroutine, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def receive(self, timeout: float = 10.0) -> dict:
        """The next event; TimeoutError if none came within `timeout` seconds.

        A receive that times out is left waiting, not cancelled: the pub/sub
        layer drops a channel whose receive is cancelled, and with it whatever
        is published before the next receive subscribes again.
        """
        if self._next is None:
            self._next = asyncio.run_coroutine_threadsafe(
                self.layer.receive(self.channel), self._loop
            )
        event = self._next.result(timeout)  # TimeoutError: still waiting
        self._next = None
        return event

    def until_final(self, timeout: float) -> list[dict]:
        """Every event, until one says final (TimeoutError after `timeout` seconds).

        Not after a `receive` that timed out: that one may take the next event.
        """

        async def collect() -> list[dict]:
            events: list[dict] = []
            async with asyncio.timeout(timeout):
                while not (events and events[-1]["final"]):
                    events.append(await self.layer.receive(self.channel))
            return events

        return self._run(collect(), timeout + 5)

    def close(self) -> None:
        _open.discard(self)
        if self._next is not None:
            self._next.cancel()
        # Redis may be gone by now: the test's business, not ours.
        with contextlib.suppress(Exception):
            self._run(self.layer.group_discard(self.group, self.channel), timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
