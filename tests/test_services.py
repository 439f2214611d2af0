import pytest
from channels.layers import get_channel_layer
from asgiref.sync import async_to_sync

from feedback import services
from feedback.models import Feedback

pytestmark = pytest.mark.django_db


def listen(group: str) -> str:
    """A channel in `group`, so the test sees what is published."""
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group, channel)
    return channel


def receive(channel: str) -> dict:
    return async_to_sync(get_channel_layer().receive)(channel)


def test_create_stores_a_queued_row_and_enqueues_after_commit(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        feedback = services.feedback_create(email="ada@example.com", message="Hi")
    feedback.refresh_from_db()
    assert feedback.status == Feedback.Status.QUEUED
    assert feedback.attempts == 0
    assert len(callbacks) == 1  # the enqueue waits for the commit


def test_claim_moves_a_waiting_row_to_sending_once():
    feedback = Feedback.objects.create(email="ada@example.com", message="Hi")
    claimed = services.feedback_claim(feedback_id=feedback.pk)
    assert claimed is not None
    assert claimed.status == Feedback.Status.SENDING
    assert claimed.attempts == 1
    assert claimed.version == 1
    # A second delivery of the same task finds nothing to claim.
    assert services.feedback_claim(feedback_id=feedback.pk) is None


def test_a_sent_row_is_never_claimed_again():
    feedback = Feedback.objects.create(email="ada@example.com", message="Hi")
    services.feedback_mark_sent(feedback=services.feedback_claim(feedback_id=feedback.pk))
    assert services.feedback_claim(feedback_id=feedback.pk) is None
    feedback.refresh_from_db()
    assert feedback.status == Feedback.Status.SENT
    assert feedback.sent_at is not None


def test_each_change_is_saved_then_published_with_a_growing_version():
    feedback = Feedback.objects.create(email="ada@example.com", message="Hi")
    channel = listen(services.status_group(feedback.pk))

    claimed = services.feedback_claim(feedback_id=feedback.pk)
    first = receive(channel)
    assert first["type"] == "status.update"
    assert 'data-status="sending"' in first["html"]
    assert first["version"] == 1 and first["final"] is False

    services.feedback_mark_failed(feedback_id=claimed.pk, reason="The mail server refused the recipient address.")
    second = receive(channel)
    assert second["version"] == 2 and second["final"] is True
    assert 'data-status="failed"' in second["html"]
    assert "refused the recipient address" in second["html"]
    stored = Feedback.objects.get(pk=feedback.pk)
    assert stored.status == Feedback.Status.FAILED
    assert stored.version == 2


def test_snapshot_of_a_valid_token_renders_the_current_state():
    from feedback.tokens import feedback_token

    feedback = Feedback.objects.create(email="ada@example.com", message="Hi")
    session = {}
    snapshot = services.feedback_snapshot(feedback_token(feedback.pk, session=session), session=session)
    assert snapshot is not None
    assert snapshot.group == services.status_group(feedback.pk)
    assert 'data-status="queued"' in snapshot.html
    assert f'id="status-{feedback.pk}"' in snapshot.html
    assert snapshot.final is False
    assert services.feedback_snapshot("forged:token", session=session) is None


def test_confirmation_email_quotes_the_message():
    feedback = Feedback.objects.create(email="ada@example.com", message="Line one\nLine two")
    email = services.build_confirmation_email(feedback=feedback)
    assert email.to == ["ada@example.com"]
    assert "> Line one\n> Line two" in email.body
    assert email.extra_headers["Message-ID"].startswith(f"<feedback-{feedback.pk}@")


def test_each_status_change_is_recorded_with_its_time_for_the_timeline(settings):
    settings.FEEDBACK_SEND_DELAY = 0
    feedback = services.feedback_create(email="ada@example.com", message="Hi", enqueue=False)
    services.feedback_deliver(feedback_id=feedback.pk)
    events = list(feedback.events.all())
    assert [event.status for event in events] == ["queued", "sending", "sent"]
    assert events[0].at == feedback.created_at
    assert events[0].at <= events[1].at <= events[2].at
    # The rendered status carries the timeline: every step done, with its time.
    html = services.feedback_render_status(feedback=Feedback.objects.get(pk=feedback.pk))
    assert html.count('data-state="done"') == 3
    assert html.count('class="timeline__time"') == 3


def test_the_timeline_shows_what_is_still_ahead():
    feedback = services.feedback_create(email="ada@example.com", message="Hi", enqueue=False)
    steps = feedback.timeline
    assert [(step.status, step.state) for step in steps] == [
        ("queued", "current"),
        ("sending", "next"),
        ("sent", "next"),
    ]
    assert steps[0].since_submit == "+0 ms" and steps[1].since_submit == ""
    services.feedback_mark_failed(feedback_id=feedback.pk, reason="No.")
    steps = Feedback.objects.get(pk=feedback.pk).timeline
    assert [(step.status, step.state) for step in steps] == [("queued", "done"), ("failed", "done")]


def test_a_row_without_events_still_shows_its_status():
    feedback = Feedback.objects.create(email="ada@example.com", message="Hi", status="sending")
    assert [(step.status, step.state) for step in feedback.timeline] == [
        ("sending", "current"),
        ("sent", "next"),
    ]
