"""The demo's two ways to send: through Celery, or the old way inside the request."""

import re

import pytest
from django.core import mail

from feedback import moves, queue
from feedback.models import Feedback

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
DATA = {"email": "ada@example.com", "message": "Hi"}


@pytest.fixture(autouse=True)
def no_delay(settings):
    settings.FEEDBACK_SEND_DELAY = 0


def answered_ms(html: str) -> int:
    match = re.search(r'data-answered-ms="(\d+)"', html)
    assert match, "the answer time is shown"
    return int(match.group(1))


def test_the_form_offers_both_ways_with_the_old_way_marked_before(client):
    html = client.get("/").content.decode()
    assert 'name="mode" value="async"' in html
    assert 'name="mode" value="sync"' in html
    assert "The old way (before)" in html
    # Both buttons are disabled while a request is in flight.
    assert 'hx-disabled-elt="find .modes"' in html


def test_async_answers_queued_and_leaves_the_send_to_the_worker(
    client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post("/", {**DATA, "mode": "async"}, headers=HTMX)
    html = response.content.decode()
    assert 'data-status="queued"' in html
    assert len(callbacks) == 1 and not is_publish(callbacks[0])  # the task is enqueued
    assert mail.outbox == []
    assert "with Celery" in html
    answered_ms(html)
    assert response["Server-Timing"].startswith("app;dur=")


def test_sync_sends_inside_the_request_and_answers_sent(client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post("/", {**DATA, "mode": "sync"}, headers=HTMX)
    html = response.content.decode()
    # Nothing is queued for a worker: the only callbacks tell the watchers.
    assert callbacks and all(is_publish(callback) for callback in callbacks)
    feedback = Feedback.objects.get()
    assert feedback.status == Feedback.Status.SENT
    assert 'data-status="sent"' in html
    assert "the old way (before)" in html
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["ada@example.com"]
    ms = answered_ms(html)
    assert f"app;dur={ms};" in response["Server-Timing"]


def test_sync_waits_for_the_simulated_slow_mail_service(client, settings):
    settings.FEEDBACK_SEND_DELAY = 0.3
    response = client.post("/", {**DATA, "mode": "sync"}, headers=HTMX)
    assert answered_ms(response.content.decode()) >= 300


def test_sync_delivery_error_ends_failed_with_a_reason(client, settings, unused_tcp_port):
    # A real SMTP client against a port where nothing listens.
    settings.MAILERS = {
        "default": {
            "BACKEND": "feedback.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": unused_tcp_port, "timeout": 5},
        }
    }
    response = client.post("/", {**DATA, "mode": "sync"}, headers=HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-status="failed"' in html
    assert "The mail server refused the connection." in html
    assert Feedback.objects.get().status == Feedback.Status.FAILED


def test_a_plain_post_reaches_the_sync_path_too(client):
    """Without htmx (a benchmark, a browser without JS) mode=sync still sends in the request."""
    response = client.post("/", {**DATA, "mode": "sync"})
    assert response.status_code == 303
    assert response["Server-Timing"].startswith("app;dur=")
    assert Feedback.objects.get().status == Feedback.Status.SENT
    assert len(mail.outbox) == 1


def test_a_plain_post_without_mode_goes_through_celery(client):
    response = client.post("/", DATA)
    assert response.status_code == 303
    assert Feedback.objects.get().status == Feedback.Status.QUEUED


def test_an_unknown_mode_is_a_form_error_and_stores_nothing(client):
    response = client.post("/", {**DATA, "mode": "teleport"}, headers=HTMX)
    assert response.status_code == 200
    assert "Select a valid choice." in response.content.decode()
    assert not Feedback.objects.exists()


def test_the_last_answers_are_kept_side_by_side_per_mode(client):
    for mode in ["sync", "async"] * 4:
        response = client.post("/", {**DATA, "mode": mode}, headers=HTMX)
    html = response.content.decode()
    # The side-by-side comes along out of band with every answer...
    assert re.search(r'<section id="answers"[^>]*hx-swap-oob="true"', html)
    # ...and is on the page after a reload, "before" first.
    page = client.get("/").content.decode()
    sync_column = page.index('data-mode="sync"')
    async_column = page.index('data-mode="async"')
    answers_end = page.index("</section>", async_column)  # the cards below have times too
    assert sync_column < async_column
    assert page[sync_column:async_column].count(" ms") == 4
    assert page[async_column:answers_end].count(" ms") == 4

    for _ in range(3):
        client.post("/", {**DATA, "mode": "async"}, headers=HTMX)
    page = client.get("/").content.decode()
    async_column = page.index('data-mode="async"')
    answers_end = page.index("</section>", async_column)
    assert page[async_column:answers_end].count(" ms") == 5  # only the last few


def is_publish(callback) -> bool:
    # A status to its watchers, or the queue-wide event when a row leaves the line.
    return (
        getattr(callback, "func", None) is moves.feedback_publish
        or callback is queue.feedback_queue_changed
    )
