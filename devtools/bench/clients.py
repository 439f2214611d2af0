"""Bench clients: a visitor on httpx (async) and websockets, like tests/support's Visitor.

A visitor keeps its cookies (session, CSRF) from the form it loaded, submits
with them, and opens status websockets with the same session cookie and Origin
as the page would: watch tokens only work in the session that submitted.
"""

import time
from http.cookies import SimpleCookie

import httpx
from websockets.asyncio.client import ClientConnection, connect

from devtools.http_client import CSRF_INPUT as _CSRF_INPUT
from devtools.http_client import status_of, watch_token

__all__ = [
    "AsyncVisitor", "open_watch", "frame_version", "recv_status", "status_of", "watch_token",
]  # fmt: skip

HEARTBEAT = "<!--heartbeat-->"  # realtime.consumers.HEARTBEAT, without importing the app


def frame_version(html: str) -> int:
    marker = 'data-version="'
    start = html.index(marker) + len(marker)
    return int(html[start : html.index('"', start)])


async def recv_status(ws: ClientConnection) -> str:
    """The next status frame, past the server's heartbeats."""
    while True:
        message = await ws.recv()
        if message != HEARTBEAT:
            return message


def cookie_header(cookies: dict[str, str]) -> str:
    jar = SimpleCookie()
    for name, value in cookies.items():
        jar[name] = value
    return jar.output(header="", sep=";").strip()


async def open_watch(
    base_url: str, token: str, *, cookies: dict[str, str], open_timeout: float = 30
) -> ClientConnection:
    """The status websocket for ``token``, opened as the page opens it."""
    ws_url = base_url.replace("http://", "ws://", 1) + f"/ws/feedback/{token}/"
    return await connect(
        ws_url,
        origin=base_url,
        additional_headers={"Cookie": cookie_header(cookies)},
        open_timeout=open_timeout,
        close_timeout=2,
        # Thousands of idle sockets: no client pings (daphne pings on its own).
        ping_interval=None,
        max_queue=None,
        compression=None,
    )


class AsyncVisitor:
    """One person: their own cookies, one connection to the server."""

    def __init__(self, base_url: str, *, timeout: float = 60) -> None:
        self.base_url = base_url
        self.http = httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )
        self.csrf = ""

    async def open_form(self) -> None:
        page = await self.http.get("/")
        page.raise_for_status()
        match = _CSRF_INPUT.search(page.text)
        if not match:
            raise RuntimeError("the form page carries no CSRF token")
        self.csrf = match.group(1)

    async def submit(
        self, *, email: str, message: str, mode: str = "async", htmx: bool = True
    ) -> tuple[httpx.Response, float]:
        """POST the form; returns the response and the seconds it took."""
        headers = {"HX-Request": "true"} if htmx else {}
        data = {"csrfmiddlewaretoken": self.csrf, "email": email, "message": message, "mode": mode}
        started = time.perf_counter()
        response = await self.http.post("/", data=data, headers=headers)
        return response, time.perf_counter() - started

    @property
    def cookies(self) -> dict[str, str]:
        return dict(self.http.cookies.items())

    async def aclose(self) -> None:
        await self.http.aclose()
