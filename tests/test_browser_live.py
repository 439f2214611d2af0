"""The index keeps this session's submissions, watches them over one socket, and notices
a socket that went silent (a real browser, real daphne, worker and SMTP server)."""

import re

import pytest
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from playwright.sync_api import expect

from devtools import processes
from feedback.models import Feedback
from realtime.consumers import HEARTBEAT
from tests.support.stall_proxy import StallProxy

CARDS = "#submissions [data-watch]"
STATUSES = "#submissions [data-watch] [data-status]"


def submit(page, message: str, *, button: str = "With Celery") -> None:
    cards = page.locator(CARDS).count()
    page.get_by_label("Your email address").fill("ada@example.com")
    page.get_by_label("Message").fill(message)
    page.get_by_role("button", name=re.compile(button)).click()
    expect(page.locator(CARDS)).to_have_count(cards + 1, timeout=15_000)


def watch_sockets(page) -> list:
    sockets: list = []
    page.on("websocket", lambda socket: sockets.append(socket))
    return sockets


def wait_for(predicate, timeout: float = 30, what: str = "the condition"):
    return processes.wait_until(predicate, timeout, what)


def statuses(*messages: str) -> list[str]:
    rows = {f.message: f.status for f in Feedback.objects.all()}
    return [rows.get(message) for message in messages]


def test_after_a_reload_the_list_is_there_and_still_live_over_one_socket(
    browser_page, start_worker, start_daphne, smtp_server
):
    start_worker(FEEDBACK_SEND_DELAY=4)
    server = start_daphne()
    page = browser_page
    page.goto(server.url)
    submit(page, "The first")
    submit(page, "The second")
    # The first is sent and the second on its way: reload now.
    wait_for(lambda: statuses("The first", "The second") == ["sent", "sending"], what="sending")

    sockets = watch_sockets(page)
    page.reload()
    page.evaluate("window.__same_page = true")
    cards = page.locator(CARDS)
    expect(cards).to_have_count(2)
    # Newest first, each with its status and timeline.
    expect(cards.nth(0).locator("blockquote")).to_have_text("The second")
    expect(cards.nth(1).locator("blockquote")).to_have_text("The first")
    expect(cards.nth(1).locator("[data-status]")).to_have_attribute("data-status", "sent")
    for card in (cards.nth(0), cards.nth(1)):
        expect(card.locator(".timeline [data-step]").first).to_be_visible()

    # The one still sending reaches sent on this page, without another reload.
    expect(cards.nth(0).locator("[data-status]")).to_have_attribute(
        "data-status", "sent", timeout=30_000
    )
    assert page.evaluate("window.__same_page") is True
    expect(page.locator("#live")).to_have_text("Live")
    assert len(sockets) == 1, [socket.url for socket in sockets]
    assert sockets[0].url.endswith("/ws/watch/") and not sockets[0].is_closed()
    assert len(smtp_server.wait_for(2)) == 2


def test_a_pushed_status_is_swapped_by_htmx_which_settles_it(
    browser_page, start_worker, start_daphne, smtp_server
):
    """Each frame goes through htmx's own swap (htmx.swap), as every other fragment does:
    htmx settles it and tells the page (htmx:afterSettle), which a bare DOM swap never does."""
    start_worker(FEEDBACK_SEND_DELAY=2)
    server = start_daphne()
    page = browser_page
    page.goto(server.url)
    page.evaluate("""() => {
      window.__settled = [];
      document.body.addEventListener("htmx:afterSettle", (event) => {
        const status = event.detail.elt;
        if (status.matches(".status[data-status]")) window.__settled.push(status.dataset.status);
      });
    }""")
    submit(page, "Swapped by htmx")
    expect(page.locator(STATUSES)).to_have_attribute("data-status", "sent", timeout=30_000)
    expect(page.locator("#live")).to_have_text("Live")  # pushed, not polled
    settled = page.evaluate("window.__settled")
    assert "sending" in settled and "sent" in settled, settled


def test_a_socket_gone_silent_without_closing_is_noticed_and_the_card_reaches_sent(
    browser_page, start_worker, start_daphne, smtp_server
):
    start_worker(FEEDBACK_SEND_DELAY=6)
    server = start_daphne()
    proxy = StallProxy(target_port=server.port).start()
    try:
        page = browser_page
        sockets = watch_sockets(page)
        page.goto(proxy.url)
        # Times the indicator's changes, in the page's own clock.
        page.evaluate("""() => {
          window.__states = [];
          const live = document.getElementById("live");
          new MutationObserver(() => window.__states.push([live.dataset.state, Date.now()]))
            .observe(live, {attributes: true, attributeFilter: ["data-state"]});
        }""")
        submit(page, "Through a tunnel")
        status = page.locator(STATUSES)
        expect(status).to_have_attribute("data-status", "sending", timeout=30_000)
        expect(page.locator("#live")).to_have_text("Live")

        assert proxy.stall_websockets() == 1  # the page's one socket, now silent and open
        stalled_at = page.evaluate("Date.now()")
        expect(status).to_have_attribute("data-status", "sent", timeout=45_000)
        sent_at = page.evaluate("Date.now()")

        states = page.evaluate("window.__states")
        noticed = [at for state, at in states if state == "reconnecting" and at >= stalled_at]
        assert noticed, states
        silent_for = (noticed[0] - stalled_at) / 1000
        print(f"silent socket noticed after {silent_for:.1f} s, sent on screen after "
              f"{(sent_at - stalled_at) / 1000:.1f} s")  # fmt: skip
        assert silent_for <= 15, states
        assert Feedback.objects.get().status == Feedback.Status.SENT
        # It reconnected: a second socket, live again.
        expect(page.locator("#live")).to_have_text("Live", timeout=30_000)
        assert len(sockets) >= 2
    finally:
        proxy.stop()


def test_ten_submissions_on_one_page_share_one_socket_and_all_reach_sent(
    browser_page, start_worker, start_daphne, smtp_server
):
    start_worker()
    server = start_daphne()
    page = browser_page
    sockets = watch_sockets(page)
    page.goto(server.url)
    for number in range(1, 11):
        submit(page, f"Message {number}")
    statuses_ = page.locator(STATUSES)
    expect(statuses_).to_have_count(10)
    for index in range(10):
        expect(statuses_.nth(index)).to_have_attribute("data-status", "sent", timeout=60_000)
    assert len(sockets) == 1, [socket.url for socket in sockets]
    assert not sockets[0].is_closed()
    assert len(smtp_server.wait_for(10)) == 10


@pytest.mark.usefixtures("smtp_server")
def test_another_browser_sees_none_of_this_sessions_submissions(browser_page, start_daphne):
    server = start_daphne()
    page = browser_page
    page.goto(server.url)
    submit(page, "Mine alone", button="The old way")  # sent in the request: no worker needed
    page.reload()
    expect(page.locator(CARDS)).to_have_count(1)
    expect(page.locator(STATUSES)).to_have_attribute("data-status", "sent")

    other = page.context.browser.new_context()
    try:
        stranger = other.new_page()
        stranger.goto(server.url)
        expect(stranger.locator("#submissions")).to_be_attached()
        expect(stranger.locator(CARDS)).to_have_count(0)
        assert "Mine alone" not in stranger.content()
        submit(stranger, "Theirs", button="The old way")
        stranger.reload()
        expect(stranger.locator(CARDS)).to_have_count(1)
    finally:
        other.close()
    page.reload()
    expect(page.locator(CARDS)).to_have_count(1)
    expect(page.locator(CARDS)).to_contain_text("Mine alone")


@pytest.mark.usefixtures("smtp_server")
def test_back_online_or_visible_again_the_page_re_reads_each_card_at_once(
    browser_page, start_daphne
):
    """No worker: the test moves the row itself and publishes nothing, as if the push was lost
    while the laptop slept (and the consumer's own re-read is set far away)."""
    server = start_daphne(REALTIME_RESYNC_SECONDS=60)
    page = browser_page
    page.goto(server.url)
    submit(page, "Where was I")
    status = page.locator(STATUSES)
    expect(page.locator("#live")).to_have_text("Live")
    reads: list[str] = []
    page.on(
        "request",
        lambda request: reads.append(request.url) if "/feedback/" in request.url else None,
    )
    page.wait_for_timeout(2_500)  # more than a polling period: the socket is open, no poll
    assert reads == []

    feedback = Feedback.objects.get()
    Feedback.objects.filter(pk=feedback.pk).update(status="sending", version=7, progress=40)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    expect(status).to_have_attribute("data-version", "7", timeout=5_000)
    assert len(reads) == 1

    Feedback.objects.filter(pk=feedback.pk).update(status="sent", version=8)
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")  # still visible
    expect(status).to_have_attribute("data-status", "sent", timeout=5_000)
    assert len(reads) == 2


def test_a_second_submission_during_a_sockets_handshake_leaves_it_valid(
    browser_page, start_worker, start_daphne, smtp_server
):
    """Another tab of the same browser submits while this page's socket is on its way. The
    session got its key with its first watcher key and keeps it (feedback/tokens.py): the
    key in that handshake still loads, and the socket watches at once, the first one."""
    sockets_opened = 1
    start_worker(FEEDBACK_SEND_DELAY=4)
    server = start_daphne()
    proxy = StallProxy(target_port=server.port).start()
    try:
        page = browser_page
        sockets = watch_sockets(page)
        polls: list[str] = []
        page.on("request", lambda r: polls.append(r.url) if "/feedback/" in r.url else None)
        page.goto(proxy.url)
        proxy.hold_websocket_handshakes()
        submit(page, "Raced")  # the page opens its socket with this card: held in the proxy
        wait_for(lambda: proxy.held_handshakes == 1, what="a held handshake")

        csrf = page.locator("input[name=csrfmiddlewaretoken]").first.input_value()
        other_tab = page.context.request.post(
            proxy.url + "/",
            form={"csrfmiddlewaretoken": csrf, "email": "ada@example.com", "message": "Other tab"},
            headers={"HX-Request": "true"},
        )
        assert other_tab.ok  # the held handshake's key is still the session's
        proxy.release_websocket_handshakes()

        card = page.locator(CARDS)
        expect(card.locator("[data-status]")).to_have_attribute(
            "data-status", "sent", timeout=30_000
        )
        expect(card).to_have_attribute("data-socket", "open")
        expect(page.locator("#live")).to_have_text("Live")
        assert len(sockets) == sockets_opened, [socket.url for socket in sockets]
        assert all(socket.is_closed() for socket in sockets[:-1])
        assert not sockets[-1].is_closed()
        assert polls == []  # every state came over the socket
        assert statuses("Raced") == ["sent"]
    finally:
        proxy.stop()


def rotate_session_key(page) -> None:
    """What a login would do: the session moves to a new key, the browser gets its cookie."""
    cookie = next(c for c in page.context.cookies() if c["name"] == settings.SESSION_COOKIE_NAME)
    session = SessionStore(cookie["value"])
    session.cycle_key()  # the new row written, the old one deleted
    page.context.add_cookies([{**cookie, "value": session.session_key}])


def test_a_page_whose_sockets_hold_between_session_changes_keeps_its_socket(
    browser_page, start_daphne
):
    """4401 closes are counted only in a row: a socket that held in between (it heard a
    heartbeat, though its card, watched with the version it shows, got no frame) starts
    the count again. One more round than the page's limit (SESSION_CHANGED_LIMIT in
    live.js, 5), each a reconnect whose handshake carries a key rotated meanwhile: the
    page is still live, every time at once, and never falls back to polling."""
    server = start_daphne(
        REALTIME_HEARTBEAT_SECONDS="1",
        FEEDBACK_RATE_LIMIT="off",
    )
    proxy = StallProxy(target_port=server.port).start()
    try:
        page = browser_page
        sockets = watch_sockets(page)
        heard: dict = {}  # socket -> heartbeats received

        def count_heartbeats(socket) -> None:
            def received(payload) -> None:
                if payload == HEARTBEAT:
                    heard[socket] = heard.get(socket, 0) + 1

            socket.on("framereceived", received)

        page.on("websocket", count_heartbeats)

        def held_and_heard(sockets_opened: int) -> bool:
            page.wait_for_timeout(50)  # Playwright delivers its events meanwhile
            return len(sockets) == sockets_opened and bool(heard.get(sockets[-1]))

        page.goto(proxy.url)
        submit(page, "Kept")  # no worker: it stays queued, watched all along
        card = page.locator(CARDS)
        expect(card).to_have_attribute("data-socket", "open", timeout=15_000)

        for held in range(1, 7):
            opened = len(sockets)
            proxy.hold_websocket_handshakes()
            assert proxy.stall_websockets() == 1  # silent: the page reconnects, held here
            wait_for(lambda n=held: proxy.held_handshakes == n, what=f"held handshake {held}")
            rotate_session_key(page)  # the key in the held handshake is gone
            proxy.release_websocket_handshakes()
            # Closed with 4401, the next socket (new cookie) holds and hears a heartbeat.
            wait_for(
                lambda n=opened + 2: held_and_heard(n),
                what=f"a socket that held after 4401 number {held}",
            )
            expect(card).to_have_attribute("data-socket", "open")
        expect(page.locator("#live")).to_have_text("Live")
        assert len(sockets) == 1 + 6 * 2  # each round: the reconnect closed with 4401, one more
    finally:
        proxy.stop()
