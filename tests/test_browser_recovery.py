"""The page recovers the truth by itself when its websocket is cut (a real browser)."""

import re
import time

from django.template.loader import render_to_string
from playwright.sync_api import expect

from feedback.models import Feedback


def submit(page, url: str) -> None:
    page.goto(url)
    # Survives only if the page is never reloaded or navigated away.
    page.evaluate("window.__same_page = true")
    page.get_by_label("Your email address").fill("ada@example.com")
    page.get_by_label("Message").fill("Cut the wire")
    page.get_by_role("button", name=re.compile("With Celery")).click()


def wait_for_status(status: str, timeout: float = 30) -> Feedback:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        feedback = Feedback.objects.first()
        if feedback is not None and feedback.status == status:
            return feedback
        time.sleep(0.05)
    raise TimeoutError(f"no feedback {status} within {timeout}s")


# Records each data-version the status element shows from now on, as it changes.
SHOWN_VERSIONS = """() => {
  window.__shown = [];
  const submissions = document.getElementById("submissions");
  const current = () => submissions.querySelector("[data-version]")?.getAttribute("data-version");
  let last = current();
  new MutationObserver(() => {
    const version = current();
    if (version !== last) { last = version; window.__shown.push(version); }
  }).observe(submissions, {subtree: true, childList: true, attributes: true});
}"""


def test_daphne_restarted_mid_send_the_page_still_reaches_sent(
    browser_page, start_worker, start_daphne, smtp_server
):
    start_worker(FEEDBACK_SEND_DELAY=3)
    server = start_daphne()
    page = browser_page
    submit(page, server.url)
    status = page.locator("#submissions [data-status]")
    expect(status).to_have_attribute("data-status", "sending", timeout=30_000)

    server.stop()  # the websocket drops mid-send
    wait_for_status("sent")  # ...and the news goes out while no one listens
    expect(status).to_have_attribute("data-status", "sending")
    server.start()  # same port

    # The page catches up on its own: a poll over HTTP or the socket's snapshot.
    expect(status).to_have_attribute("data-status", "sent", timeout=30_000)
    assert page.evaluate("window.__same_page") is True
    assert len(smtp_server.messages) == 1


def test_while_the_socket_is_down_the_status_polls_never_goes_back_and_stops_at_final(
    browser_page, start_daphne, smtp_server
):
    """No worker: the test moves the row itself and serves one stale answer."""
    server = start_daphne()
    page = browser_page
    # Every websocket is refused as if the server were restarting (1012): the page keeps
    # reconnecting, so the status element has only its HTTP fallback.
    page.route_web_socket(re.compile(r".*/ws/.*"), lambda ws: ws.close(code=1012))
    polls: list[str] = []
    stale: list[str] = []  # when set, the next poll gets this instead of the server's answer

    def on_status(route):
        polls.append(route.request.url)
        if stale:
            route.fulfill(status=200, content_type="text/html", body=stale.pop())
        else:
            route.continue_()

    page.route(re.compile(r".*/feedback/[^/]+/$"), on_status)
    submit(page, server.url)
    status = page.locator("#submissions [data-status]")
    expect(status).to_have_attribute("data-status", "queued", timeout=15_000)
    page.evaluate(SHOWN_VERSIONS)

    # The row moves on; the page learns it by polling.
    feedback = Feedback.objects.get()
    Feedback.objects.filter(pk=feedback.pk).update(status="sending", version=5, progress=40)
    expect(status).to_have_attribute("data-version", "5", timeout=15_000)
    expect(status).to_have_attribute("data-status", "sending")

    # An older answer (version 2, queued) arrives late: it must not win.
    feedback.refresh_from_db()
    feedback.status, feedback.version = "queued", 2
    stale.append(render_to_string("feedback/detail.html#status", {"feedback": feedback}))
    polls_before = len(polls)
    deadline = time.monotonic() + 15
    while stale and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    assert not stale, "the stale answer was never asked for"
    assert len(polls) > polls_before
    # One more poll after the stale one: by then the stale answer has been handled.
    after_stale = len(polls)
    deadline = time.monotonic() + 15
    while len(polls) <= after_stale and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert len(polls) > after_stale, "polling stopped after the stale answer"
    assert page.evaluate("window.__shown") == ["5"]  # version 2 was never shown

    # Final: the server answers 286 and the polling stops.
    Feedback.objects.filter(pk=feedback.pk).update(status="sent", version=6)
    expect(status).to_have_attribute("data-status", "sent", timeout=15_000)
    settled = len(polls)
    page.wait_for_timeout(5_000)  # more than two polling periods
    assert len(polls) == settled
    assert page.evaluate("window.__shown") == ["5", "6"]
    assert page.evaluate("window.__same_page") is True


def test_when_the_socket_comes_back_the_polling_stops(browser_page, start_daphne, smtp_server):
    """No worker: the row stays queued (never final), so only the socket can stop the polls."""
    server = start_daphne()
    page = browser_page
    refusing = [True]  # while set, every status socket is closed as if daphne restarted

    def on_socket(ws):
        if refusing[0]:
            ws.close(code=1012)
        else:
            ws.connect_to_server()

    # The page's one status socket (/ws/watch/) and the per-card one (/ws/feedback/).
    page.route_web_socket(re.compile(r".*/ws/(watch|feedback)/.*"), on_socket)
    polls: list[float] = []
    page.on(
        "request",
        lambda request: re.search(r"/feedback/[^/]+/$", request.url) and polls.append(1),
    )
    submit(page, server.url)
    status = page.locator("#submissions [data-status]")
    expect(status).to_have_attribute("data-status", "queued", timeout=15_000)

    deadline = time.monotonic() + 15
    while len(polls) < 2 and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert len(polls) >= 2, "the status was not polled while the socket was down"

    refusing[0] = False  # the socket may come back: htmx reconnects with its backoff
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        settled = len(polls)
        page.wait_for_timeout(5_000)  # more than two polling periods
        if len(polls) == settled:
            break
    else:
        raise AssertionError("the page kept polling after the socket came back")
    # Still polling-free a while later, and the row was never final: the socket stopped it.
    settled = len(polls)
    page.wait_for_timeout(5_000)
    assert len(polls) == settled
    assert Feedback.objects.get().status == "queued"
