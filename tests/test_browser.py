"""What a person sees, in a real browser: submit, and watch the status arrive live."""

import re

from playwright.sync_api import expect

from feedback.models import Feedback


def test_the_status_appears_at_once_and_turns_sent_live(
    browser_page, start_worker, start_daphne, smtp_server
):
    start_worker(FEEDBACK_SEND_DELAY=1.5)
    server = start_daphne()
    page = browser_page
    requests: list[str] = []
    page.on("request", lambda request: requests.append(f"{request.method} {request.url}"))
    page.goto(server.url)
    # Survives only if the page is never reloaded or navigated away.
    page.evaluate("window.__same_page = true")

    page.get_by_label("Your email address").fill("ada@example.com")
    page.get_by_label("Message").fill("Watching it live")
    page.get_by_role("button", name=re.compile("With Celery")).click()

    status = page.locator("#submissions [data-status]")
    expect(status).to_be_visible()
    expect(status).to_have_attribute("data-status", "sending", timeout=30_000)
    expect(status).to_have_attribute("data-status", "sent", timeout=30_000)

    assert page.evaluate("window.__same_page") is True
    assert page.url == server.url + "/"
    # Updates came over the websocket: the page never asked for the status again.
    assert not [r for r in requests if "/feedback/" in r], requests
    assert len(smtp_server.wait_for(1)) == 1
    assert len(smtp_server.messages) == 1

    # The status page, opened afterwards, says sent too.
    page.locator("#submissions").get_by_role("link", name="Status page").click()
    expect(page.locator("[data-status]")).to_have_attribute("data-status", "sent")
    assert Feedback.objects.get().status == Feedback.Status.SENT
