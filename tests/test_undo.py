"""Undo: the window no worker sends in, cancelling, and who may cancel.

In-process tests call the services, the task and the view; the ones with a
real worker, daphne and SMTP server check that a cancelled feedback never
reaches the mail server, even when the cancel races the claim.
"""

import random
import re
import time
from datetime import timedelta
from http import HTTPStatus

import pytest
from celery.exceptions import Retry
from django.utils import timezone

from devtools.http_client import Visitor, status_of, watch_token
from feedback import delivery, services
from feedback.models import Feedback, Status
from feedback.tasks import send_feedback_email
from tests.test_views import watch_token as token_for

HTMX = {"HX-Request": "true"}


def cancel(visitor: Visitor, token: str, *, htmx: bool = True):
    """Press Undo as the page does: a POST with the CSRF cookie's token."""
    headers = {"X-CSRFToken": visitor.http.cookies.get("csrftoken", "")}
    if htmx:
        headers.update(HTMX)
    return visitor.http.post(f"/feedback/{token}/cancel/", headers=headers)


def submit(client, settings, mode: str = "async"):
    response = client.post(
        "/", {"email": "ada@example.com", "message": "Hi", "mode": mode}, headers=HTMX
    )
    assert response.status_code == HTTPStatus.OK
    return response.content.decode()


# -- In process ---------------------------------------------------------------------


@pytest.mark.django_db
def test_no_claim_before_the_undo_window_ends():
    feedback = services.feedback_create(email="ada@example.com", message="Hi", enqueue=False,
                                        undo_seconds=60)  # fmt: skip
    assert delivery.feedback_claim(feedback_id=feedback.pk) is None
    assert Feedback.objects.get(pk=feedback.pk).status == Status.QUEUED
    Feedback.objects.filter(pk=feedback.pk).update(undo_until=timezone.now() - timedelta(seconds=1))
    assert delivery.feedback_claim(feedback_id=feedback.pk) is not None


@pytest.mark.django_db
def test_a_task_delivered_early_waits_for_the_window_and_sends_nothing(settings, smtp_server):
    settings.FEEDBACK_SEND_DELAY = 0
    feedback = services.feedback_create(email="ada@example.com", message="Hi", enqueue=False,
                                        undo_seconds=30)  # fmt: skip
    with pytest.raises(Retry):  # retried once the window is over, not dropped
        send_feedback_email(str(feedback.pk))
    assert Feedback.objects.get(pk=feedback.pk).status == Status.QUEUED
    time.sleep(0.5)
    assert smtp_server.messages == []


@pytest.mark.django_db
def test_the_celery_way_shows_undo_with_its_countdown_and_the_old_way_does_not(client, settings):
    settings.FEEDBACK_UNDO_SECONDS = 5
    settings.FEEDBACK_SEND_DELAY = 0
    html = submit(client, settings)
    feedback = Feedback.objects.get()
    assert feedback.undo_until is not None
    assert re.search(r'<button type="submit" form="cancel-[^"]+" class="status__undo"', html)
    assert re.search(r'<span class="status__countdown-seconds">[1-5]</span> s left to undo', html)
    assert 'action="/feedback/' in html and "/cancel/" in html  # the form the button submits

    started = time.monotonic()
    html = submit(client, settings, mode="sync")
    # The old way: sent inside the request, no undo, not slowed by the window.
    assert time.monotonic() - started < settings.FEEDBACK_UNDO_SECONDS
    assert status_of(html) == "sent"
    assert "status__undo" not in html
    assert Feedback.objects.filter(undo_until__isnull=True, status=Status.SENT).count() == 1


@pytest.mark.django_db
def test_undo_cancels_a_queued_feedback_and_stop_trying_a_retrying_one(client, settings):
    settings.FEEDBACK_UNDO_SECONDS = 5
    submit(client, settings)
    queued = Feedback.objects.get()
    token = token_for(client, queued)
    response = client.post(f"/feedback/{token}/cancel/", headers=HTMX)
    assert response.status_code == HTTPStatus.OK
    html = response.content.decode()
    assert status_of(html) == "cancelled"
    assert 'data-final="true"' in html
    assert "Cancelled" in html and "taken back" in html  # the timeline says so

    retrying = Feedback.objects.create(
        email="ada@example.com",
        message="Hi",
        status=Status.RETRYING,
        attempts=1,
        failure_reason="The mail server answered 451.",
        next_retry_at=timezone.now() + timedelta(minutes=1),
    )
    token = token_for(client, retrying)
    page = client.get(f"/feedback/{token}/").content.decode()
    assert ">Stop trying</button>" in page
    assert client.post(f"/feedback/{token}/cancel/", headers=HTMX).status_code == HTTPStatus.OK
    assert Feedback.objects.get(pk=retrying.pk).status == Status.CANCELLED


@pytest.mark.django_db
def test_a_feedback_already_being_sent_is_not_cancelled_too_late_is_said(client):
    sending = Feedback.objects.create(email="ada@example.com", message="Hi", status="sending")
    token = token_for(client, sending)
    response = client.post(f"/feedback/{token}/cancel/", headers=HTMX)
    assert response.status_code == HTTPStatus.CONFLICT
    assert "Too late to take it back" in response.content.decode()
    assert Feedback.objects.get(pk=sending.pk).status == Status.SENDING
    # Read, not written: a GET is not a cancel.
    assert client.get(f"/feedback/{token}/cancel/").status_code == HTTPStatus.METHOD_NOT_ALLOWED


# -- Real processes -------------------------------------------------------------------


def wait_final(ids, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        rows = dict(Feedback.objects.filter(pk__in=ids).values_list("pk", "status"))
        if all(status in {"sent", "failed", "cancelled"} for status in rows.values()):
            return rows
        assert time.monotonic() < deadline, f"not final in {timeout} s: {rows}"
        time.sleep(0.1)


def test_cancel_from_another_session_a_forged_token_or_after_the_final_state_changes_nothing(
    start_daphne, start_worker, smtp_server
):
    start_worker()
    server = start_daphne(FEEDBACK_UNDO_SECONDS=30, FEEDBACK_RATE_LIMIT="off")
    with Visitor(server.url) as owner, Visitor(server.url) as stranger:
        token = watch_token(owner.submit(email="ada@example.com", message="Hi").text)
        feedback = Feedback.objects.get()
        before = (feedback.status, feedback.version)
        stranger.http.get("/")  # a session and a CSRF cookie of their own

        assert cancel(stranger, token).status_code == HTTPStatus.NOT_FOUND
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        assert cancel(owner, forged).status_code == HTTPStatus.NOT_FOUND
        assert cancel(owner, "not-a-token").status_code == HTTPStatus.NOT_FOUND
        # Without the CSRF token: refused before anything is read.
        no_csrf = owner.http.post(f"/feedback/{token}/cancel/", headers=HTMX)
        assert no_csrf.status_code == HTTPStatus.FORBIDDEN
        feedback.refresh_from_db()
        assert (feedback.status, feedback.version) == before

        # The owner may; then, final, nobody can any more.
        assert cancel(owner, token).status_code == HTTPStatus.OK
        feedback.refresh_from_db()
        assert feedback.status == Status.CANCELLED
        version = feedback.version
        again = cancel(owner, token)
        assert again.status_code == HTTPStatus.CONFLICT
        assert status_of(again.text) == "cancelled"
        feedback.refresh_from_db()
        assert (feedback.status, feedback.version) == ("cancelled", version)

        # A sent one cannot be cancelled either.
        sent_token = watch_token(owner.submit(email="bob@example.com", message="Hi").text)
        sent = Feedback.objects.get(email="bob@example.com")
        Feedback.objects.filter(pk=sent.pk).update(undo_until=timezone.now())
        smtp_server.wait_for(1, timeout=60)
        wait_final([sent.pk])
        sent.refresh_from_db()
        refused = cancel(owner, sent_token)
        assert refused.status_code == HTTPStatus.CONFLICT
        assert status_of(refused.text) == "sent"
        assert Feedback.objects.get(pk=sent.pk).version == sent.version
    assert [m.rcpt_tos for m in smtp_server.messages] == [["bob@example.com"]]


def test_undo_racing_the_claim_ends_cancelled_with_no_email_or_sent_with_one(
    start_daphne, start_worker, smtp_server
):
    # No window: the cancel and the claim really race, each try at its own moment.
    start_worker(concurrency=2, FEEDBACK_SEND_DELAY=0)
    server = start_daphne(FEEDBACK_UNDO_SECONDS=0, FEEDBACK_RATE_LIMIT="off")
    tries = 30
    answers = {}
    with Visitor(server.url) as visitor:
        for number in range(tries):
            email = f"race{number}@example.com"
            token = watch_token(visitor.submit(email=email, message="Hi").text)
            time.sleep(random.uniform(0, 0.05))
            answers[email] = cancel(visitor, token).status_code
    rows = wait_final(list(Feedback.objects.values_list("pk", flat=True)))
    assert len(rows) == tries
    time.sleep(1)  # any email a cancelled row would wrongly cause has had time to arrive
    mailed = [m.rcpt_tos[0] for m in smtp_server.messages]
    by_email = dict(Feedback.objects.values_list("email", "status"))
    for email, status in by_email.items():
        if status == "cancelled":
            assert answers[email] == HTTPStatus.OK
            assert email not in mailed
        else:
            assert status == "sent", (email, status)
            assert answers[email] == HTTPStatus.CONFLICT
            assert mailed.count(email) == 1
    outcomes = list(by_email.values())
    cancelled, sent = outcomes.count("cancelled"), outcomes.count("sent")
    print(f"\n{tries} races: {cancelled} cancelled, {sent} sent")


def test_undo_in_the_browser_cancels_live_and_only_the_other_submission_is_mailed(
    browser_page, start_daphne, start_worker, smtp_server
):
    from playwright.sync_api import expect

    from tests.test_accessibility import serious_violations

    window = 8  # long enough to press Undo on a busy machine
    start_worker(FEEDBACK_UNDO_SECONDS=window)
    server = start_daphne(FEEDBACK_UNDO_SECONDS=window)
    page = browser_page
    console = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.goto(server.url)
    celery = page.get_by_role("button", name=re.compile("With Celery"))
    for email in ("undo@example.com", "keep@example.com"):
        page.get_by_label("Your email address").fill(email)
        page.get_by_label("Message").fill("Hello")
        celery.click()
        expect(page.locator(".submission", has_text=email)).to_be_visible()
        expect(celery).to_be_enabled()

    undone = page.locator(".submission", has_text="undo@example.com")
    kept = page.locator(".submission", has_text="keep@example.com")
    undo = undone.get_by_role("button", name="Undo")
    expect(undo).to_be_visible()
    # A visible countdown, tied to the button for screen readers.
    countdown = undone.locator(".status__countdown")
    expect(countdown).to_have_text(re.compile(r"^\d+ s left to undo$"))
    first = int(countdown.locator(".status__countdown-seconds").inner_text())
    expect(countdown.locator(".status__countdown-seconds")).not_to_have_text(str(first))
    assert undo.get_attribute("aria-describedby") == countdown.get_attribute("id")
    assert serious_violations(page) == []

    # From the keyboard: focus it and press Enter.
    undo.focus()
    page.keyboard.press("Enter")
    status = undone.locator(".status")
    expect(status).to_have_attribute("data-status", "cancelled")
    expect(status).to_contain_text("Cancelled: no email was sent.")
    steps = status.locator(".timeline__step")
    expect(steps.last).to_have_attribute("data-step", "cancelled")
    expect(steps.last).to_contain_text("taken back")
    expect(undone.get_by_role("button", name="Undo")).to_have_count(0)
    expect(page.locator("#announcer")).to_contain_text("Cancelled")

    # The other one: its Undo goes away when the window ends, then it is sent, once.
    expect(kept.get_by_role("button", name="Undo")).to_be_hidden(timeout=(window + 5) * 1000)
    expect(kept.locator(".status")).to_have_attribute("data-status", "sent", timeout=30_000)
    [mail] = smtp_server.wait_for(1, timeout=30)
    assert mail.rcpt_tos == ["keep@example.com"]
    time.sleep(1)
    assert len(smtp_server.messages) == 1
    assert Feedback.objects.get(email="undo@example.com").status == Status.CANCELLED
    # No inline script, nothing the Content-Security-Policy had to stop, no error.
    assert [line for line in console if line.startswith("error")] == [], console
