from datetime import timedelta

import pytest

from feedback import delivery, services
from feedback.models import Feedback
from feedback.timeline import feedback_timeline, format_offset
from feedback.wording import Failure, Outcome, Reason


def test_offsets_read_as_milliseconds_then_seconds():
    assert format_offset(timedelta(0)) == "+0 ms"
    assert format_offset(timedelta(milliseconds=12.4)) == "+12 ms"
    assert format_offset(timedelta(milliseconds=999)) == "+999 ms"
    assert format_offset(timedelta(seconds=3.012)) == "+3.01 s"
    # Clocks of two processes may disagree a little: never a negative time.
    assert format_offset(timedelta(milliseconds=-3)) == "+0 ms"


# -- A move's row carries its events: publishing it reads none ------------------

GREYLISTED = Failure(reason=Reason.SMTP_ANSWER, outcome=Outcome.RETRYING, smtp_code=451)


def submitted() -> Feedback:
    return services.feedback_create(email="ada@example.com", message="Hi", enqueue=False)


def as_read(feedback: Feedback) -> list:
    """The timeline the page renders: the row and its events read afresh."""
    return feedback_timeline(feedback=Feedback.objects.get(pk=feedback.pk))


def shown_without_a_read(moved: Feedback, django_assert_num_queries) -> list:
    with django_assert_num_queries(0):
        return feedback_timeline(feedback=moved)


@pytest.mark.django_db
@pytest.mark.engines
def test_a_first_delivery_publishes_the_timeline_the_page_reads_without_reading_it(
    django_assert_num_queries, settings
):
    settings.FEEDBACK_SEND_DELAY = 0
    feedback = submitted()
    claimed = delivery.feedback_claim(feedback_id=feedback.pk)
    shown = shown_without_a_read(claimed, django_assert_num_queries)
    assert [(step.status, step.state) for step in shown] == [
        ("queued", "done"), ("sending", "current"), ("sent", "next")
    ]  # fmt: skip
    assert shown == as_read(claimed)
    progressed = delivery.feedback_mark_progress(
        feedback_id=feedback.pk, step="smtp", progress=50, last_seen=claimed
    )
    assert shown_without_a_read(progressed, django_assert_num_queries) == as_read(progressed)
    sent = delivery.feedback_mark_sent(feedback_id=feedback.pk, last_seen=progressed)
    assert shown_without_a_read(sent, django_assert_num_queries) == as_read(sent)
    assert [step.status for step in as_read(sent)] == ["queued", "sending", "sent"]


@pytest.mark.django_db
def test_the_whole_delivery_hands_its_rows_on(django_assert_num_queries, settings):
    settings.FEEDBACK_SEND_DELAY = 0
    sent = delivery.feedback_deliver(feedback_id=submitted().pk)
    assert sent.status == Feedback.Status.SENT
    assert shown_without_a_read(sent, django_assert_num_queries) == as_read(sent)


@pytest.mark.django_db
@pytest.mark.engines
def test_a_row_moved_by_another_since_the_callers_is_read(django_assert_num_queries):
    feedback = submitted()
    claimed = delivery.feedback_claim(feedback_id=feedback.pk)
    # Meanwhile (a lease ran out): another delivery's attempt failed and it claimed again.
    delivery.feedback_mark_retrying(
        feedback_id=feedback.pk, reason=GREYLISTED, next_retry_at=claimed.created_at
    )
    again = delivery.feedback_claim(feedback_id=feedback.pk)
    assert again is not None and again.known_events is None  # not the first move: not known
    sent = delivery.feedback_mark_sent(feedback_id=feedback.pk, last_seen=claimed)
    assert sent.known_events is None  # `claimed` is not the version before: read
    assert [step.status for step in feedback_timeline(feedback=sent)] == [
        "queued", "sending", "retrying", "sending", "sent"
    ]  # fmt: skip
    assert feedback_timeline(feedback=sent) == as_read(sent)


@pytest.mark.django_db
def test_a_row_refreshed_since_its_move_is_read():
    feedback = submitted()
    claimed = delivery.feedback_claim(feedback_id=feedback.pk)
    delivery.feedback_mark_sent(feedback_id=feedback.pk)
    claimed.refresh_from_db()  # now the sent row: what the claim carried is not its events
    assert [step.status for step in feedback_timeline(feedback=claimed)] == [
        "queued", "sending", "sent"
    ]  # fmt: skip


@pytest.mark.django_db
def test_a_first_move_that_is_not_the_claim_is_known_too(django_assert_num_queries):
    cancelled = services.feedback_cancel(feedback_id=submitted().pk)
    assert shown_without_a_read(cancelled, django_assert_num_queries) == as_read(cancelled)
