"""What a hostile or careless internet does to the running app.

Each case against real processes where the harm was real: a flood of health
probes through the real Celery stack, a 200 MiB body measured on the real
daphne process, status sockets opened by the thousand, odd X-Forwarded-For
headers behind `--proxy-headers` and daphne on a unix socket. Bounds on time
are generous: they tell "answered" from "hung", not fast from slow.
"""

import concurrent.futures
import contextlib
import random
import re
import socket
import time

import httpx
import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client
from playwright.sync_api import expect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from devtools.http_client import Visitor, status_of, watch_token
from django_celery.asgi import application
from django_celery.celery import app as celery_app
from feedback import services
from feedback.models import Feedback
from health.checks import health_report_forget

MiB = 1024 * 1024
HTMX = {"HX-Request": "true"}


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def some_address() -> str:
    """An address of this test's own: rate-limit counters in Redis outlive a test."""
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


# -- /healthz cannot take the site down ------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_healthz_then_a_submission_is_answered(start_daphne, start_worker):
    start_worker()
    daphne = start_daphne()

    def probe(_: int) -> int:
        return httpx.get(f"{daphne.url}/healthz", timeout=30).status_code

    with Visitor(daphne.url) as visitor:
        visitor.http.get("/")  # the session and CSRF cookie, before the flood
        with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
            probes = [pool.submit(probe, number) for number in range(50)]
            time.sleep(3)  # the flood is on: every probe is waiting on the checks
            started = time.monotonic()
            response = visitor.submit(email="ada@example.com", message="Still there?")
            answered_in = time.monotonic() - started
            codes = [future.result() for future in probes]  # a hung probe raises a timeout
    assert response.status_code == 200 and status_of(response.text) == "queued"
    assert answered_in < 10, f"the submission took {answered_in:.1f} s"
    assert set(codes) == {200}, codes
    assert Feedback.objects.get().message == "Still there?"


@pytest.mark.django_db(transaction=True)
def test_enqueue_waits_for_a_broker_connection_only_a_while(settings):
    """No free connection in the pool: the answer comes anyway, the row waits for the sweeper."""
    settings.FEEDBACK_ENQUEUE_WAIT = 0.5
    pool = celery_app.pool
    held = [pool.acquire(block=True, timeout=5) for _ in range(pool.limit)]
    try:
        started = time.monotonic()
        feedback = services.feedback_create(email="ada@example.com", message="Hi")
        took = time.monotonic() - started
    finally:
        for connection in held:
            connection.release()
    assert took < 5, f"feedback_create waited {took:.1f} s"
    feedback.refresh_from_db()
    assert feedback.status == Feedback.Status.QUEUED


@pytest.mark.django_db(transaction=True)
def test_head_is_answered_like_get(start_daphne, start_worker):
    start_worker()
    daphne = start_daphne()
    health_report_forget()
    for path in ("/healthz", "/"):
        response = httpx.head(f"{daphne.url}{path}", timeout=10)
        assert response.status_code == 200, path
        assert response.content == b""


# -- bodies ---------------------------------------------------------------------------


def big_body(size: int):
    chunk = b"x" * MiB
    for _ in range(size // MiB):
        yield chunk


@pytest.fixture
def behind_haproxy(start_daphne, start_haproxy):
    """daphne behind HAProxy with deploy/haproxy.cfg, as in production: (proxy, daphne)."""
    daphne = start_daphne(TRUSTED_PROXY_HOPS="1")
    return start_haproxy(web=[f"{daphne.host}:{daphne.port}"] * 2), daphne


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("declared", "refused_with"), [(True, 413), (False, 411)], ids=["content-length", "chunked"]
)
def test_haproxy_refuses_a_200_mib_body_before_daphne_reads_it(
    behind_haproxy, declared, refused_with
):
    proxy, daphne = behind_haproxy
    with Visitor(proxy.url) as visitor:
        visitor.http.get("/")
        visitor.submit(email="ada@example.com", message="warm up")
        before = peak_rss_mib(daphne.pid)
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if declared:
            headers["Content-Length"] = str(200 * MiB)
        with contextlib.suppress(httpx.WriteError):  # refused before the body was all sent
            response = visitor.http.post(
                "/", content=big_body(200 * MiB), headers=headers, timeout=60
            )
            assert response.status_code == refused_with
        assert peak_rss_mib(daphne.pid) - before < 40
        # The next visitor is served as usual.
        assert visitor.submit(email="ada@example.com", message="after").status_code == 200
    assert set(Feedback.objects.values_list("message", flat=True)) == {"warm up", "after"}
    assert " 413 " in proxy.log_text() or " 411 " in proxy.log_text()


@pytest.mark.django_db(transaction=True)
def test_haproxy_drops_a_client_that_trickles_its_headers(behind_haproxy):
    proxy, _ = behind_haproxy
    with socket.create_connection((proxy.host, proxy.port), timeout=30) as trickler:
        trickler.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        started = time.monotonic()
        closed_after = None
        while time.monotonic() - started < 25:
            try:
                trickler.sendall(b"X-Slow: still here\r\n")
                trickler.settimeout(1)
                answer = trickler.recv(1024)
                if answer == b"" or answer.startswith(b"HTTP/1.1 408"):
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                continue
            except OSError:  # reset by the proxy
                closed_after = time.monotonic() - started
                break
    assert closed_after is not None, "still open after 25 s of trickling"
    # Clients that send their request at once are served, on a kept-alive connection too.
    with httpx.Client(base_url=proxy.url, timeout=10) as client:
        assert client.get("/").status_code == 200
        time.sleep(1)
        assert client.get("/").status_code == 200


# -- request charsets ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("charset", ["latin-1", "utf-16", "no-such-charset", "UTF-8"])
def test_a_form_in_another_charset_is_a_400_never_a_500(start_daphne, charset):
    daphne = start_daphne()
    with Visitor(daphne.url) as visitor:
        page = visitor.http.get("/")
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        body = f"csrfmiddlewaretoken={csrf}&email=ada%40example.com&message=Ol%E1"
        response = visitor.http.post(
            "/",
            content=body.encode("ascii"),
            headers={"Content-Type": f"application/x-www-form-urlencoded; charset={charset}"},
        )
    if charset == "UTF-8":
        # %E1 alone is not UTF-8: Django replaces it, the form takes the rest.
        assert response.status_code == 303
    else:
        assert response.status_code == 400
        assert "That request could not be understood" in response.text
        assert not Feedback.objects.exists()
    assert "Traceback" not in daphne.log_text()


# -- the client's address, in every deployment shape -------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_odd_forwarded_for_headers_behind_proxy_headers_never_err(start_daphne):
    daphne = start_daphne(
        extra_args=("--proxy-headers",), TRUSTED_PROXY_HOPS="1", FEEDBACK_RATE_LIMIT="100/h"
    )
    shapes = ["unknown", "1.2.3.4:5678", "[2001:db8::1]:443", "", ",", "2001:db8::1", "garbage, x"]
    for shape in shapes:
        with Visitor(daphne.url) as visitor:
            visitor.http.headers["X-Forwarded-For"] = shape
            response = visitor.submit(email="ada@example.com", message=f"from {shape!r}")
            assert response.status_code == 200, (shape, response.status_code)
    assert Feedback.objects.count() == len(shapes)
    assert "Traceback" not in daphne.log_text()


@pytest.mark.django_db(transaction=True)
def test_rotating_the_first_forwarded_entry_does_not_walk_past_the_limit(start_daphne):
    """A proxy that appends: only the entry it wrote (the rightmost) is believed."""
    daphne = start_daphne(
        extra_args=("--proxy-headers",), TRUSTED_PROXY_HOPS="1", FEEDBACK_RATE_LIMIT="3/h"
    )
    client = some_address()
    codes = []
    for attempt in range(6):
        with Visitor(daphne.url) as visitor:
            visitor.http.headers["X-Forwarded-For"] = f"{some_address()}, {client}"
            codes.append(visitor.submit(email="ada@example.com", message=f"#{attempt}").status_code)
    assert codes == [200, 200, 200, 429, 429, 429]
    assert Feedback.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_daphne_on_a_unix_socket_takes_submissions(start_daphne, tmp_path):
    path = tmp_path / "daphne.sock"
    start_daphne(extra_args=("-u", str(path)), FEEDBACK_RATE_LIMIT="100/h")
    with Visitor("http://127.0.0.1") as visitor:
        visitor.http = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(path)), base_url="http://127.0.0.1", timeout=30
        )
        response = visitor.submit(email="ada@example.com", message="Hi", htmx=False)
    assert response.status_code == 303
    assert Feedback.objects.get().message == "Hi"


# -- pages that show a submission ----------------------------------------------------------


@pytest.mark.django_db
def test_pages_with_a_submission_are_never_stored_by_a_shared_cache(client):
    response = client.post("/", {"email": "ada@example.com", "message": "Hi"}, headers=HTMX)
    assert response["Cache-Control"] == "private, no-store"
    status_url = f"/feedback/{watch_token(response.content.decode())}/"
    for url in ("/", status_url):
        page = client.get(url)
        assert page.status_code == 200, url
        assert page["Cache-Control"] == "private, no-store", url


@pytest.mark.django_db
def test_the_session_key_changes_when_watch_rights_are_bound_to_it(client):
    planted = SessionStore()
    planted["planted"] = True
    planted.create()
    client.cookies[settings.SESSION_COOKIE_NAME] = planted.session_key
    response = client.post("/", {"email": "ada@example.com", "message": "Hi"}, headers=HTMX)
    token = watch_token(response.content.decode())
    assert client.cookies[settings.SESSION_COOKIE_NAME].value != planted.session_key
    assert client.get(f"/feedback/{token}/").status_code == 200  # the submitter still watches
    attacker = Client()
    attacker.cookies[settings.SESSION_COOKIE_NAME] = planted.session_key
    assert attacker.get(f"/feedback/{token}/").status_code == 404
    # The planted key lists nothing of the victim's, nor the victim's next submission.
    index = attacker.get("/").content.decode()
    assert "data-watch" not in index and token not in index
    again = client.post("/", {"email": "ada@example.com", "message": "More"}, headers=HTMX)
    assert attacker.get(f"/feedback/{watch_token(again.content.decode())}/").status_code == 404
    assert "data-watch" not in attacker.get("/").content.decode()
    assert client.get("/").content.decode().count("data-watch") == 2  # the victim's page


@pytest.mark.django_db
def test_a_2000_character_message_with_line_breaks_is_accepted_as_the_browser_sends_it(client):
    """The textarea counts a line break as one character; the browser sends CRLF."""
    message = ("x" * 99 + "\n") * 20  # 2,000 characters in the textarea
    sent = message.replace("\n", "\r\n")  # 2,020 on the wire
    response = client.post("/", {"email": "ada@example.com", "message": sent})
    assert response.status_code == 303
    assert len(Feedback.objects.get().message.replace("\r\n", "\n")) == 2000 - 1  # stripped
    too_long = client.post("/", {"email": "ada@example.com", "message": sent + "y"}, headers=HTMX)
    assert "at most 2000 characters (it has 2001)" in too_long.content.decode()


# -- security headers on everything ---------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "host", "status"),
    [("/static/css/app.css", "127.0.0.1", 200), ("/", "evil.example", 400), ("/nope", None, 404)],
    ids=["static", "bad-host", "not-found"],
)
def test_every_response_carries_the_security_headers(settings, path, host, status):
    settings.DEBUG = False  # the debug error pages drop the CSP on purpose (inline styles)
    extra = {"HTTP_HOST": host} if host else {}
    response = Client(raise_request_exception=False).get(path, **extra)
    assert response.status_code == status
    assert "default-src 'self'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


# -- status sockets ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "origin",
    [
        b"ftp://127.0.0.1:8000",
        b"http://127.0.0.1:9999",
        b"http://127.0.0.1",
        b"https://localhost:8000",
        b"http://127.0.0.1:8000/path",
        b"null",
    ],
)
async def test_a_socket_from_another_origin_is_refused(origin):
    client = Client()
    response = await sync_to_async(client.post)(
        "/", {"email": "ada@example.com", "message": "Hi"}, headers=HTMX
    )
    token = watch_token(response.content.decode())
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    ws = WebsocketCommunicator(
        application,
        f"/ws/feedback/{token}/",
        headers=[(b"host", b"127.0.0.1:8000"), (b"origin", origin), (b"cookie", cookie.encode())],
    )
    connected, _ = await ws.connect(timeout=5)
    assert not connected
    await ws.disconnect()


def open_socket(visitor: Visitor, token: str, *, forwarded_for: str | None = None):
    ws_url = visitor.base_url.replace("http://", "ws://", 1) + f"/ws/feedback/{token}/"
    headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in visitor.http.cookies.items())}
    if forwarded_for:
        headers["X-Forwarded-For"] = forwarded_for
    return connect(
        ws_url,
        origin=visitor.base_url,
        additional_headers=headers,
        open_timeout=10,
        close_timeout=5,
    )


def close_code(ws) -> int | None:
    """The close code if the server closes the socket before sending anything, else None."""
    try:
        ws.recv(timeout=10)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None
    return None


@pytest.mark.django_db(transaction=True)
def test_sockets_per_session_and_per_client_are_capped(start_daphne):
    daphne = start_daphne(
        TRUSTED_PROXY_HOPS="1",
        REALTIME_MAX_SOCKETS_PER_SESSION="3",
        REALTIME_MAX_SOCKETS_PER_CLIENT="5",
    )
    address = some_address()

    def refused(visitor: Visitor, token: str, forwarded_for: str = address) -> int | None:
        with open_socket(visitor, token, forwarded_for=forwarded_for) as ws:
            return close_code(ws)

    with (
        Visitor(daphne.url) as one,
        Visitor(daphne.url) as two,
        contextlib.ExitStack() as opened,
    ):
        token = watch_token(one.submit(email="ada@example.com", message="Hi").text)
        first = opened.enter_context(open_socket(one, token, forwarded_for=address))
        assert 'data-status="queued"' in first.recv(timeout=10)  # open, sent its status
        for _ in range(2):
            ws = opened.enter_context(open_socket(one, token, forwarded_for=address))
            assert 'data-status="queued"' in ws.recv(timeout=10)
        assert refused(one, token) == 4429  # a fourth for this session

        other = watch_token(two.submit(email="bob@example.com", message="Hi").text)
        for _ in range(2):
            ws = opened.enter_context(open_socket(two, other, forwarded_for=address))
            assert 'data-status="queued"' in ws.recv(timeout=10)
        assert refused(two, other) == 4429  # a sixth for this address
        assert refused(two, other, forwarded_for=some_address()) is None  # another address

        first.close()  # a place is free again, once the server has seen the close
        deadline = time.monotonic() + 10
        while refused(one, token) == 4429:
            assert time.monotonic() < deadline, "the closed socket still counts"
            time.sleep(0.2)


@pytest.mark.django_db(transaction=True)
def test_a_connect_flood_is_turned_away_and_a_real_watcher_is_served(start_daphne):
    daphne = start_daphne(TRUSTED_PROXY_HOPS="1", REALTIME_CONNECTS_PER_SECOND="2")
    with Visitor(daphne.url) as flooder, Visitor(daphne.url) as watcher:
        flood_token = watch_token(flooder.submit(email="eve@example.com", message="x").text)
        token = watch_token(watcher.submit(email="ada@example.com", message="Hi").text)
        flood_address = some_address()
        codes = []
        flood_started = time.monotonic()
        for _ in range(60):
            with open_socket(flooder, flood_token, forwarded_for=flood_address) as ws:
                codes.append(close_code(ws))
        flood_took = time.monotonic() - flood_started
        # A burst of 3 s worth (6), then 2 a second: the rest is turned away.
        admitted = codes.count(None)
        assert admitted <= 6 + 2 * flood_took + 1, (admitted, flood_took)
        assert codes.count(4429) == 60 - admitted

        started = time.monotonic()
        with open_socket(watcher, token, forwarded_for=some_address()) as ws:
            assert 'data-status="queued"' in ws.recv(timeout=10)
        assert time.monotonic() - started < 5


# -- what the page does with a socket over the cap (a real browser) ---------------------------


@pytest.mark.django_db(transaction=True)
def test_a_page_over_the_socket_cap_polls_instead_and_does_not_retry(
    browser_page, start_worker, start_daphne
):
    start_worker(FEEDBACK_SEND_DELAY=1.5)
    server = start_daphne(REALTIME_MAX_SOCKETS_PER_SESSION="0")  # every socket is over the cap
    page = browser_page
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.goto(server.url)
    page.get_by_label("Your email address").fill("ada@example.com")
    page.get_by_label("Message").fill("Over the cap")
    page.get_by_role("button", name=re.compile("With Celery")).click()

    status = page.locator("#submissions [data-status]")
    expect(status).to_have_attribute("data-status", "sent", timeout=30_000)  # by polling
    time.sleep(2)  # time enough for a retry storm to show
    assert len(sockets) == 1, sockets
