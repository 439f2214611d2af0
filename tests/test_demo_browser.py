"""The demo in a real browser: both ways to send, the live timeline, several at once.

Real processes throughout: daphne, a Celery worker, Redis, an SMTP server.
Timings are only asserted from below (the old way waits at least the delay);
how fast the Celery way answers is measured, never asserted.
"""

import re
import time

import pytest
from playwright.sync_api import Page, expect

from outbox.mailbox import read_mails

pytestmark = pytest.mark.django_db(transaction=True)

SYNC_DELAY = 1.5  # long enough to see the old way wait, short enough for a test


def fill(page: Page, email: str, message: str = "Hello from the demo") -> None:
    page.get_by_label("Your email address").fill(email)
    page.get_by_label("Message").fill(message)


def card(page: Page, email: str):
    return page.locator(".submission", has_text=email)


def test_the_old_way_waits_for_the_mail_inside_the_request(browser_page, start_daphne, smtp_server):
    server = start_daphne(FEEDBACK_SEND_DELAY=SYNC_DELAY)
    page = browser_page
    page.goto(server.url)
    fill(page, "sync@example.com")
    sync_button = page.get_by_role("button", name=re.compile("The old way"))

    started = time.monotonic()
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        sync_button.click()
        # While the server works, neither button can be pressed again.
        expect(sync_button).to_be_disabled()
        expect(page.get_by_role("button", name=re.compile("With Celery"))).to_be_disabled()
    assert answer.value.status == 200
    assert time.monotonic() - started >= SYNC_DELAY

    submission = card(page, "sync@example.com")
    # Already sent when the page answers: the request did all the work.
    expect(submission.locator(".status")).to_have_attribute("data-status", "sent")
    shown = int(submission.locator("[data-answered-ms]").get_attribute("data-answered-ms"))
    assert shown >= SYNC_DELAY * 1000
    expect(submission).to_contain_text("the old way (before)")
    expect(submission).to_contain_text(re.compile(r"answered in [\d,]+ ms"))
    expect(page.locator('.answers__column[data-mode="sync"]')).to_contain_text(
        re.compile(r"[\d,]+ ms")
    )
    expect(sync_button).to_be_enabled()
    [mail] = smtp_server.wait_for(1)
    assert mail.rcpt_tos == ["sync@example.com"]


def test_with_celery_the_page_answers_queued_and_the_timeline_reaches_sent(
    browser_page, start_daphne, start_worker, smtp_server
):
    start_worker()
    server = start_daphne()
    page = browser_page
    page.goto(server.url)
    fill(page, "async@example.com")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name=re.compile("With Celery")).click()
    # The answer came before the email was sent: it says queued.
    assert 'data-status="queued"' in answer.value.text()

    submission = card(page, "async@example.com")
    expect(submission).to_contain_text("with Celery")
    expect(submission).to_contain_text(re.compile(r"answered in [\d,]+ ms"))
    status = submission.locator(".status")
    expect(status).to_have_attribute("data-status", "sent", timeout=30_000)
    # Each step of the timeline is done, with its time since submit.
    steps = status.locator(".timeline__step")
    expect(steps).to_have_count(3)
    for index, name in enumerate(["queued", "sending", "sent"]):
        step = steps.nth(index)
        expect(step).to_have_attribute("data-step", name)
        expect(step).to_have_attribute("data-state", "done")
        expect(step.locator(".timeline__time")).to_have_text(re.compile(r"^\+[\d.]+ m?s$"))
    expect(page.locator('.answers__column[data-mode="async"]')).to_contain_text(
        re.compile(r"[\d,]+ ms")
    )
    # The live region said so, in words.
    expect(page.locator("#announcer")).to_contain_text("Confirmation sent to async@example.com")
    assert [m.rcpt_tos for m in smtp_server.wait_for(1)] == [["async@example.com"]]


def test_two_submissions_are_watched_at_once(browser_page, start_daphne, start_worker, smtp_server):
    start_worker(FEEDBACK_SEND_DELAY=1.0)
    server = start_daphne(FEEDBACK_SEND_DELAY=1.0)
    page = browser_page
    page.goto(server.url)
    celery = page.get_by_role("button", name=re.compile("With Celery"))
    for email in ["first@example.com", "second@example.com"]:
        fill(page, email)
        celery.click()
        expect(card(page, email)).to_be_visible()
        expect(celery).to_be_enabled()

    # One worker, one at a time: while the first is being sent the second waits, both on screen.
    first, second = card(page, "first@example.com"), card(page, "second@example.com")
    expect(first.locator('.status[data-status="sending"]')).to_be_visible(timeout=30_000)
    expect(first.locator("progress")).to_be_visible()
    for submission in (first, second):
        expect(submission.locator(".status")).to_have_attribute(
            "data-status", "sent", timeout=30_000
        )
    # The newest is on top.
    expect(page.locator(".submission").first).to_contain_text("second@example.com")
    assert sorted(m.rcpt_tos[0] for m in smtp_server.wait_for(2)) == [
        "first@example.com",
        "second@example.com",
    ]


def test_the_outbox_shows_the_email_that_went_through_smtp(
    browser_page, start_daphne, start_worker, dev_mailbox
):
    env, path = dev_mailbox
    start_worker(**env)
    server = start_daphne(**env)
    page = browser_page
    page.goto(server.url)
    fill(page, "mailbox@example.com", "Please add a dark mode.")
    page.get_by_role("button", name=re.compile("With Celery")).click()
    status = card(page, "mailbox@example.com").locator(".status")
    expect(status).to_have_attribute("data-status", "sent", timeout=30_000)
    [stored] = read_mails(path)
    assert stored.rcpt_tos == ["mailbox@example.com"]

    # In debug each sent status links to its email in the Outbox.
    status.get_by_role("link", name="See the email in the Outbox").click()
    expect(page).to_have_url(re.compile(r"/outbox/#mail-feedback-"))
    mail = page.locator(".mail:target")
    expect(mail).to_contain_text("Thanks for your feedback")
    expect(mail).to_contain_text("mailbox@example.com")
    expect(mail).to_contain_text("> Please add a dark mode.")
    expect(mail.locator("time")).to_contain_text("UTC")
