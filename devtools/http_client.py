"""A person's browser, minus the browser: real HTTP and websocket clients
against a running daphne, for the integration tests and the bench."""

import re
from dataclasses import dataclass, field
from http.cookies import SimpleCookie

import httpx
from websockets.sync.client import ClientConnection, connect

CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
_WS_CONNECT = re.compile(r'data-watch="feedback/([^"]+)"')


@dataclass
class Visitor:
    """One visitor with their own cookies (session, CSRF)."""

    base_url: str
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.base_url, timeout=30, follow_redirects=False)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "Visitor":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def submit(
        self, *, email: str, message: str, htmx: bool = True, **extra: str
    ) -> httpx.Response:
        page = self.http.get("/")
        page.raise_for_status()
        csrf = CSRF_INPUT.search(page.text)
        assert csrf, "the form carries a CSRF token"
        headers = {"HX-Request": "true"} if htmx else {}
        data = {"csrfmiddlewaretoken": csrf.group(1), "email": email, "message": message, **extra}
        return self.http.post("/", data=data, headers=headers)

    def watch(self, token: str, *, origin: str | None = None) -> ClientConnection:
        """Open the status websocket as the page would (same cookies, same origin)."""
        ws_url = self.base_url.replace("http://", "ws://", 1) + f"/ws/feedback/{token}/"
        cookie = SimpleCookie()
        for name, value in self.http.cookies.items():
            cookie[name] = value
        headers = {"Cookie": cookie.output(header="", sep=";").strip()}
        if "Accept-Language" in self.http.headers:  # a browser's handshake says it too
            headers["Accept-Language"] = self.http.headers["Accept-Language"]
        return connect(
            ws_url,
            origin=origin or self.base_url,
            additional_headers=headers,
            open_timeout=10,
            close_timeout=5,
        )


def watch_token(html: str) -> str:
    match = _WS_CONNECT.search(html)
    assert match, "the status fragment opens a websocket"
    return match.group(1)


def status_of(html: str) -> str:
    match = re.search(r'data-status="(\w+)"', html)
    assert match, "a status fragment carries data-status"
    return match.group(1)


def statuses_until_final(ws: ClientConnection, *, timeout: float = 30) -> list[str]:
    """Every status the socket pushes, until the server closes it at a final state."""
    seen: list[str] = []
    from websockets.exceptions import ConnectionClosedOK

    try:
        while True:
            seen.append(status_of(ws.recv(timeout=timeout)))
    except ConnectionClosedOK:
        return seen
