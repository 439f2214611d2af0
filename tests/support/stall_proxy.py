"""A TCP proxy on 127.0.0.1 that can make the websockets through it go silent without closing.

What a laptop that sleeps or a phone that changes networks does to an open
socket: no byte passes any more, in either direction, and neither end is told.
``stall_websockets()`` does that to every websocket connection open through the
proxy (the ones whose request asked for an upgrade); plain HTTP connections,
and connections opened afterwards, keep passing bytes.

``hold_websocket_handshakes()`` keeps each new websocket's handshake (its
cookies already in it) until ``release_websocket_handshakes()``: what a
handshake that is slow to reach a busy server does, so a test can change the
session meanwhile.
"""

import asyncio
import contextlib
import threading

from devtools.ports import free_port

CHUNK = 65536


class _Connection:
    def __init__(self) -> None:
        self.websocket = False
        self.stalled = asyncio.Event()


class StallProxy:
    def __init__(self, *, target_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port(host)
        self.target_port = target_port
        self._loop = asyncio.new_event_loop()
        self._connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._handshakes_go: asyncio.Event | None = None  # set: held handshakes pass
        self.held_handshakes = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "StallProxy":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            # Let each connection's clean-up run on this loop before it stops (closing
            # a transport after the loop has closed warns "Event loop is closed").
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def stall_websockets(self) -> int:
        """Stop passing the bytes of every open websocket; returns how many."""

        def stall() -> int:
            stalled = [c for c in self._connections if c.websocket and not c.stalled.is_set()]
            for connection in stalled:
                connection.stalled.set()
            return len(stalled)

        return self._call(stall)

    def hold_websocket_handshakes(self) -> None:
        def hold() -> None:
            self._handshakes_go = asyncio.Event()

        self._call(hold)

    def release_websocket_handshakes(self) -> None:
        def release() -> None:
            if self._handshakes_go is not None:
                self._handshakes_go.set()
                self._handshakes_go = None

        self._call(release)

    def _call(self, function):
        async def run():
            return function()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)

    async def _serve(self, client_reader, client_writer) -> None:
        connection = _Connection()
        self._connections.add(connection)
        try:
            server_reader, server_writer = await asyncio.open_connection(
                self.host, self.target_port
            )
        except OSError:
            client_writer.close()
            self._connections.discard(connection)
            return
        try:
            await asyncio.gather(
                self._pump(client_reader, server_writer, connection, upstream=True),
                self._pump(server_reader, client_writer, connection, upstream=False),
            )
        finally:
            self._connections.discard(connection)
            for writer in (client_writer, server_writer):
                writer.close()

    async def _pump(self, reader, writer, connection: _Connection, *, upstream: bool) -> None:
        while True:
            data = await reader.read(CHUNK)
            if connection.stalled.is_set():
                # Silent from now on, but open: no byte passes, not even a close.
                await asyncio.Event().wait()
            if not data:
                break
            if upstream and b"upgrade: websocket" in data.lower():
                connection.websocket = True
                if (go := self._handshakes_go) is not None:
                    self.held_handshakes += 1
                    await go.wait()
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()
