"""Property tests (hypothesis) over everything a stranger can send.

- the form's fields, over HTTP through the whole middleware stack: never a 5xx,
  nothing stored for invalid input, and what is stored is header-safe;
- status-page URLs with made-up tokens: a 404, never an error, never a status;
- websocket paths and origins, against the whole ASGI application: a socket is
  either refused at the handshake or accepted and closed with 4403, never sent data;
- websocket messages from a legitimate watcher: ignored, never answered;
- request content types and charsets: answered (400 for a charset the app
  does not read), never a 5xx;
- X-Forwarded-For shapes, with any number of trusted proxy hops: never a 5xx,
  and entries a client adds on the left never change the address it counts as.

Example counts are bounded so the suite stays quick; run with
`--hypothesis-show-statistics` to see how many cases ran and how they ended.
"""

import re
import string
import unicodedata

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from django_celery.asgi import application
from feedback.forms import MESSAGE_MAX_LENGTH
from feedback.models import Feedback
from realtime.consumers import HEARTBEAT

bounded = hypothesis_settings(
    max_examples=200,
    deadline=None,  # a shared 2-core machine: timing is not what is under test
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

HOSTILE_CHARS = "\r\n\t\x00\x0b\x0c\x1b\x7f\x85\u2028\u2029\u200b\u202e\ufeff<>\"'&;:,%@ "
hostile_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(HOSTILE_CHARS),
        st.characters(exclude_categories=["Cs"]),
        st.sampled_from(string.ascii_letters + string.digits + ".-_+"),
    ),
    max_size=80,
)
emails = st.one_of(
    st.emails(),
    hostile_text,
    st.builds(
        lambda local, junk, domain: f"{local}{junk}@{domain}",
        hostile_text,
        hostile_text,
        st.sampled_from(["example.com", "exämple.com", "x"]),
    ),
    st.builds(lambda good, junk: good + junk, st.emails(), hostile_text),
)
messages = st.one_of(
    hostile_text,
    st.text(max_size=50).map(lambda text: text * 50),  # around the length limit
    st.just("x" * MESSAGE_MAX_LENGTH),
    st.just("x" * (MESSAGE_MAX_LENGTH + 1)),
)
modes = st.one_of(st.sampled_from(["", "async", "sync"]), hostile_text)
extra_fields = st.dictionaries(hostile_text.filter(bool), hostile_text, max_size=3)


def header_safe(value: str) -> bool:
    return not any(unicodedata.category(char) in {"Cc", "Cf", "Cs", "Zl", "Zp"} for char in value)


@pytest.mark.django_db
@bounded
@given(email=emails, message=messages, mode=modes, extra=extra_fields, htmx=st.booleans())
def test_the_form_never_errs_and_stores_only_clean_input(
    settings, email, message, mode, extra, htmx
):
    settings.FEEDBACK_SEND_DELAY = 0
    before = Feedback.objects.count()
    client = Client()
    data = {**extra, "email": email, "message": message, "mode": mode}
    response = client.post("/", data, headers={"HX-Request": "true"} if htmx else {})
    assert response.status_code < 500

    stored = Feedback.objects.count() - before
    event(f"HTTP {response.status_code}, {'stored' if stored else 'nothing stored'}")
    if response.status_code in (200, 303) and stored:
        assert stored == 1
        row = Feedback.objects.order_by("-created_at").first()
        assert header_safe(row.email) and len(row.email) <= 254
        assert row.message and len(row.message) <= MESSAGE_MAX_LENGTH
        assert "\x00" not in row.message
        assert row.message == message.strip()
    else:
        assert stored == 0
        assert response.status_code in (200, 400, 413), response.status_code


ORIGINS = [b"http://127.0.0.1:8000", b"http://evil.example", None]
path_text = st.text(
    alphabet=st.one_of(st.characters(exclude_categories=["Cs"]), st.sampled_from("/%:.-_?#~")),
    max_size=60,
)
segment = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="/?#"),
    min_size=1,
    max_size=60,
)
b64 = st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=60)
ws_paths = st.one_of(
    segment.map(lambda token: f"/ws/feedback/{token}/"),  # reaches the consumer
    st.builds(lambda a, b, c: f"/ws/feedback/{a}:{b}:{c}/", b64, b64, b64),  # signed-looking
    path_text.map(lambda text: "/ws/feedback/" + text),
    path_text.map(lambda text: "/ws/" + text),
    path_text.map(lambda text: "/" + text),
    st.builds(lambda kind, token: f"/ws/{kind}/{token}/", path_text, path_text),
)


@pytest.mark.django_db
@bounded
@given(token=st.one_of(segment, path_text), htmx=st.booleans())
def test_a_stranger_status_page_is_a_404_never_an_error(client, token, htmx):
    response = client.get(f"/feedback/{token}/", headers={"HX-Request": "true"} if htmx else {})
    event(f"HTTP {response.status_code}")
    assert response.status_code in (404, 301), response.status_code  # 301: APPEND_SLASH
    assert 'data-status="' not in response.content.decode()


async def _open(path: str, origin: bytes | None, cookie: str = "") -> WebsocketCommunicator:
    headers = [(b"host", b"127.0.0.1:8000")]
    if origin:
        headers.append((b"origin", origin))
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return WebsocketCommunicator(application, path, headers=headers)


@pytest.mark.django_db(transaction=True)
@bounded
@given(path=ws_paths, origin=st.sampled_from([ORIGINS[0], *ORIGINS]))
def test_a_stranger_socket_is_refused_or_closed_4403_and_never_gets_data(path, origin):

    async def attempt() -> str:
        ws = await _open(path, origin)
        connected, _ = await ws.connect(timeout=5)
        if not connected:
            return "refused at the handshake"  # a 403, not a 500
        assert origin == ORIGINS[0]  # only our own origin ever gets this far
        if path == "/ws/watch/":  # the page socket: open, and silent until it is asked
            assert await ws.receive_nothing(timeout=0.2)
            await ws.disconnect()
            return "the page socket, silent"
        assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}
        assert await ws.receive_nothing(timeout=0.05)
        return "accepted, closed 4403"

    event(async_to_sync(attempt)())


@sync_to_async
def _submit() -> tuple[str, str]:
    client = Client()
    response = client.post(
        "/", {"email": "ada@example.com", "message": "Hi"}, headers={"HX-Request": "true"}
    )
    watched = re.search(r'data-watch="(feedback/[^"]+)"', response.content.decode()).group(1)
    path = f"/ws/{watched}/"
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    return path, cookie


frames = st.lists(
    st.one_of(
        st.text(max_size=200).map(lambda text: {"type": "websocket.receive", "text": text}),
        st.binary(max_size=200).map(lambda data: {"type": "websocket.receive", "bytes": data}),
    ),
    min_size=1,
    max_size=5,
)


@pytest.mark.django_db(transaction=True)
@hypothesis_settings(bounded, max_examples=50)
@given(frames=frames)
def test_messages_from_a_watcher_are_ignored(frames):

    async def attempt() -> None:
        path, cookie = await _submit()
        ws = await _open(path, ORIGINS[0], cookie)
        connected, _ = await ws.connect(timeout=5)
        assert connected
        assert 'data-status="queued"' in await ws.receive_from(timeout=5)
        for frame in frames:
            await ws.send_input(frame)
        # No echo, no error frame, no close. The consumer runs in this process and
        # handles a frame in well under a millisecond: a quarter second is ample time
        # for an answer to show up, were there one.
        assert await ws.receive_nothing(timeout=0.25)
        await ws.disconnect()

    async_to_sync(attempt)()


@pytest.mark.django_db(transaction=True)
@hypothesis_settings(bounded, max_examples=50)
@given(frames=frames)
def test_a_stranger_page_socket_gets_refusals_and_never_data(frames):
    """Random frames, some of them watch commands with another browser's token."""

    async def attempt() -> str:
        path, _ = await _submit()  # someone else's submission
        ws = await _open("/ws/watch/", ORIGINS[0])
        connected, _ = await ws.connect(timeout=5)
        assert connected
        for frame in [*frames, {"type": "websocket.receive", "text": "watch " + path[4:-1]}]:
            await ws.send_input(frame)
        replies = 0
        while not await ws.receive_nothing(timeout=0.2):
            reply = await ws.receive_from()
            if reply == HEARTBEAT:
                continue
            assert reply.startswith("refused "), "data to a stranger"
            replies += 1
        assert replies >= 1  # the other browser's card, refused by name
        await ws.disconnect()
        return f"{replies} refused"

    event(async_to_sync(attempt)())


CHARSETS = ["utf-8", "UTF-8", "utf8", "ascii", "latin-1", "iso-8859-1", "utf-16", "utf-32"]
header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)
content_types = st.builds(
    lambda kind, params: "; ".join([kind, *params]),
    st.one_of(
        st.sampled_from(
            [
                "application/x-www-form-urlencoded",
                "multipart/form-data",
                "text/plain",
                "application/json",
                "",
            ]
        ),
        header_text,
    ),
    st.lists(
        st.one_of(
            st.builds("charset={}".format, st.one_of(st.sampled_from(CHARSETS), header_text)),
            st.builds("boundary={}".format, header_text),
            header_text,
        ),
        max_size=3,
    ),
)


@pytest.mark.django_db
@hypothesis_settings(bounded, max_examples=150)
@given(content_type=content_types, junk=st.binary(max_size=40))
def test_any_content_type_and_charset_is_answered_never_a_5xx(settings, content_type, junk):
    settings.FEEDBACK_SEND_DELAY = 0
    before = Feedback.objects.count()
    body = b"email=ada%40example.com&message=Hi&" + junk
    response = Client().generic("POST", "/", body, content_type=content_type)
    event(f"HTTP {response.status_code}")
    assert response.status_code < 500
    if response.status_code >= 400:
        assert Feedback.objects.count() == before


forwarded_entries = st.one_of(
    st.ip_addresses().map(str),
    st.builds("{}:{}".format, st.ip_addresses(v=4), st.integers(0, 65535)),
    st.ip_addresses(v=6).map(lambda address: f"[{address}]:443"),
    st.sampled_from(["unknown", "", " ", "_hidden", '"1.2.3.4"', "[::1", "1.2.3.4:x"]),
    header_text.filter(lambda text: "," not in text),
)


@pytest.mark.django_db
@hypothesis_settings(bounded, max_examples=100)
@given(
    entries=st.lists(forwarded_entries, max_size=4),
    peer=st.one_of(st.none(), forwarded_entries),
    hops=st.integers(min_value=0, max_value=3),
)
def test_any_forwarded_for_is_answered_never_a_5xx(settings, entries, peer, hops):
    settings.FEEDBACK_SEND_DELAY = 0
    settings.FEEDBACK_RATE_LIMIT = "100000/h"
    settings.TRUSTED_PROXY_HOPS = hops
    extra = {"REMOTE_ADDR": peer} if peer is not None else {"REMOTE_ADDR": ""}
    if entries:
        extra["HTTP_X_FORWARDED_FOR"] = ", ".join(entries)
    response = Client().post("/", {"email": "ada@example.com", "message": "Hi"}, **extra)
    event(f"HTTP {response.status_code}")
    assert response.status_code == 303


@given(
    trusted=st.lists(forwarded_entries, min_size=1, max_size=3),
    spoofed=st.lists(forwarded_entries, max_size=3),
    peer=st.one_of(st.none(), forwarded_entries),
)
def test_entries_a_client_adds_on_the_left_never_change_its_address(trusted, spoofed, peer):
    from web.client_address import UNKNOWN, client_address, parse_address

    hops = len(trusted)
    seen = client_address(peer=peer, forwarded_for=[", ".join(trusted)], trusted_hops=hops)
    assert seen == UNKNOWN or parse_address(seen.split("/")[0]) is not None
    with_spoofed = client_address(
        peer=peer, forwarded_for=[", ".join([*spoofed, *trusted])], trusted_hops=hops
    )
    assert with_spoofed == seen
