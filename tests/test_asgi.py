"""The whole ASGI application (django_celery.asgi): origin checks and session-bound watch
tokens on the websocket, as a browser's handshake would reach them through daphne."""

import re

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.core import signing
from django.test import Client

from django_celery.asgi import application
from feedback.models import Feedback

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = b"http://127.0.0.1:8000"


def socket(path: str, *, origin: bytes | None = ORIGIN, cookie: str = "") -> WebsocketCommunicator:
    headers = [(b"host", b"127.0.0.1:8000")]
    if origin is not None:
        headers.append((b"origin", origin))
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return WebsocketCommunicator(application, path, headers=headers)


@sync_to_async
def submit() -> tuple[Client, str]:
    """A browser that submitted feedback: its client (session cookie) and its watch path."""
    client = Client()
    response = client.post(
        "/", {"email": "ada@example.com", "message": "Hi"}, headers={"HX-Request": "true"}
    )
    watched = re.search(r'data-watch="(feedback/[^"]+)"', response.content.decode()).group(1)
    path = f"/ws/{watched}/"
    return client, path


def cookie_of(client: Client) -> str:
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


async def assert_refused_with_4403(ws: WebsocketCommunicator) -> None:
    connected, _ = await ws.connect(timeout=5)
    assert connected  # accepted, then closed: htmx would retry a refused handshake forever
    assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}
    assert await ws.receive_nothing(timeout=0.2)


async def test_the_submitting_browser_watches_its_feedback():
    client, path = await submit()
    ws = socket(path, cookie=cookie_of(client))
    connected, _ = await ws.connect(timeout=5)
    assert connected
    assert 'data-status="queued"' in await ws.receive_from(timeout=5)
    await ws.disconnect()


async def test_another_browser_with_the_same_url_gets_4403_and_no_data():
    _, path = await submit()
    other, _ = await submit()  # a browser with a session of its own
    await assert_refused_with_4403(socket(path, cookie=cookie_of(other)))
    await assert_refused_with_4403(socket(path))  # no session cookie at all


async def test_an_expired_token_gets_4403(settings, monkeypatch):
    client, path = await submit()
    later = signing.time.time() + settings.FEEDBACK_TOKEN_MAX_AGE + 5
    monkeypatch.setattr(signing.time, "time", lambda: later)
    await assert_refused_with_4403(socket(path, cookie=cookie_of(client)))


async def test_a_forged_token_gets_4403():
    client, path = await submit()
    token = path.split("/")[3]
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    await assert_refused_with_4403(socket(f"/ws/feedback/{forged}/", cookie=cookie_of(client)))
    await assert_refused_with_4403(socket(f"/ws/other-kind/{token}/", cookie=cookie_of(client)))


@pytest.mark.parametrize(
    "origin",
    [b"http://evil.example", b"http://127.0.0.1.evil.example", b"null", b"", None],
    ids=["foreign", "lookalike", "null", "empty", "missing"],
)
async def test_a_foreign_or_missing_origin_is_refused_at_the_handshake(origin):
    client, path = await submit()
    ws = socket(path, origin=origin, cookie=cookie_of(client))
    connected, code = await ws.connect(timeout=5)
    assert not connected  # refused before the consumer runs: it never sees the token
    assert code == 1000  # a close before accept: the server answers the handshake with 403
    assert await Feedback.objects.acount() == 1


async def test_on_the_page_socket_only_the_submitting_browser_gets_its_card():
    client, path = await submit()
    name = path.removeprefix("/ws/").rstrip("/")  # feedback/<token>
    other, _ = await submit()
    for cookie in (cookie_of(other), ""):  # another browser, and none at all
        ws = socket("/ws/watch/", cookie=cookie)
        connected, _ = await ws.connect(timeout=5)
        assert connected
        await ws.send_to(text_data=f"watch {name}")
        assert await ws.receive_from(timeout=5) == f"refused {name}"  # and no data
        assert await ws.receive_nothing(timeout=0.2)
        await ws.disconnect()
    ws = socket("/ws/watch/", cookie=cookie_of(client))
    await ws.connect(timeout=5)
    await ws.send_to(text_data=f"watch {name}")
    assert 'data-status="queued"' in await ws.receive_from(timeout=5)
    await ws.disconnect()


# -- The session key rotates once, when the session gets its watcher key --------------
# A later submission keeps the key (feedback/tokens.py, docs/decisions/): a page socket
# opened before it, or another tab submitting at the same instant, keeps every card live.


@sync_to_async
def submit_again(client: Client) -> str:
    """A second submission from the same browser (another tab, a double click)."""
    response = client.post(
        "/", {"email": "ada@example.com", "message": "Again"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    return re.search(r'data-watch="(feedback/[^"]+)"', response.content.decode()).group(1)


def browser_with(cookie: str) -> Client:
    """Another tab of the same browser: the cookie it was sent with."""
    tab = Client()
    tab.cookies[settings.SESSION_COOKIE_NAME] = cookie.partition("=")[2]
    return tab


async def watches(cookie: str, *names: str) -> None:
    ws = socket("/ws/watch/", cookie=cookie)
    connected, _ = await ws.connect(timeout=5)
    assert connected
    for name in names:
        await ws.send_to(text_data=f"watch {name}")
        assert 'data-status="queued"' in await ws.receive_from(timeout=5), name
    await ws.disconnect()


async def test_a_page_socket_opened_before_a_second_submission_watches_every_card():
    client, path = await submit()
    first = path.removeprefix("/ws/").rstrip("/")
    presented = cookie_of(client)
    ws = socket("/ws/watch/", cookie=presented)
    connected, _ = await ws.connect(timeout=5)
    assert connected
    second = await submit_again(client)
    assert cookie_of(client) == presented  # rotated once, at the first submission only
    for name in (first, second):
        await ws.send_to(text_data=f"watch {name}")
        assert 'data-status="queued"' in await ws.receive_from(timeout=5)
    await ws.disconnect()


async def test_two_tabs_submitting_with_the_same_key_keep_every_card_live():
    client, path = await submit()
    earlier = path.removeprefix("/ws/").rstrip("/")
    key = cookie_of(client)
    tab_a, tab_b = browser_with(key), browser_with(key)
    card_a = await submit_again(tab_a)
    card_b = await submit_again(tab_b)
    assert {cookie_of(tab_a), cookie_of(tab_b)} == {key}
    await watches(key, earlier, card_a, card_b)
    for card in (card_a, card_b):
        status = await sync_to_async(browser_with(key).get)(f"/{card}/")
        assert status.status_code == 200


async def assert_closed_with_4401(ws: WebsocketCommunicator, *, watch: str) -> None:
    connected, _ = await ws.connect(timeout=5)
    assert connected
    await ws.send_to(text_data=f"watch {watch}")  # as a page does on open, before the close
    assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
    assert await ws.receive_nothing(timeout=0.2)  # no card, not even a "refused"


@sync_to_async
def planted_then_submitted() -> tuple[str, str]:
    """A session key planted in a browser before it submitted: (that key, the watch name)."""
    attackers = SessionStore()  # a row of the attacker's, then planted in the victim's browser
    attackers["planted"] = True
    attackers.create()
    client = browser_with(f"{settings.SESSION_COOKIE_NAME}={attackers.session_key}")
    planted = cookie_of(client)
    response = client.post(
        "/", {"email": "ada@example.com", "message": "Hi"}, headers={"HX-Request": "true"}
    )
    assert cookie_of(client) != planted  # the watcher key came with a new session key
    name = re.search(r'data-watch="(feedback/[^"]+)"', response.content.decode()).group(1)
    return planted, name


async def test_a_planted_or_unknown_key_gains_no_watch_rights():
    planted, name = await planted_then_submitted()
    unknown = f"{settings.SESSION_COOKIE_NAME}={'x' * 32}"  # a key the store never had
    for cookie in (planted, unknown, planted):  # coming back with it changes nothing
        await assert_closed_with_4401(socket("/ws/watch/", cookie=cookie), watch=name)
    # A key too short to be one is no key: an empty session, whose watches are refused.
    ws = socket("/ws/watch/", cookie=f"{settings.SESSION_COOKIE_NAME}=short")
    await ws.connect(timeout=5)
    await ws.send_to(text_data=f"watch {name}")
    assert await ws.receive_from(timeout=5) == f"refused {name}"
    await ws.disconnect()
