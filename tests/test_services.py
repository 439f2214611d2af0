import smtplib
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from feedback import delivery, selectors, services, smtp, sweeping
from feedback.mail import DeliveryError, build_confirmation_email
from feedback.models import Feedback
from feedback.timeline import feedback_timeline
from feedback.wording import Failure, Outcome, Reason
from tests.support.layer import LayerListener

# Claims, conditional updates and the sweeper: also run on PostgreSQL (make test).
pytestmark = [pytest.mark.django_db, pytest.mark.engines]


def listen(group: str) -> LayerListener:
    """A channel in `group`, so the test sees what is published."""
    return LayerListener(group)


def receive(listener: LayerListener) -> dict:
    return listener.receive()


def test_create_stores_a_queued_row_and_enqueues_after_commit(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        feedback = services.feedback_create(email="ada@example.com", message="Hi")
    feedback.refresh_from_db()
    assert feedback.status == Feedback.Status.QUEUED
    assert feedback.attempts == 0
    assert len(callbacks) == 1  # the enqueue waits for the commit


def test_claim_moves_a_waiting_row_to_sending_once():
    feedback = Feedback.objects.create(email="ada@example.com", message="Hi")
    claimed = delivery.feedback_claim(feedback_id=feedback.pk)
    assert claimed is not None
    assert claimed.status == Feedback.Status.SENDING
    assert claimed.attempts == 1
    assert claimed.version == 1
    # A second delivery of the same task finds nothing to claim.
    assert delivery.feedback_claim(feedback_id=feedback.pk) is None


def test_a_sent_row_is_never_claimed_again():
    feedback = Feedback.objects.create(email="ada@example.com", message="Hi")
    delivery.feedback_claim(feedback_id=feedback.pk)
    delivery.feedback_mark_sent(feedback_id=feedback.pk)
    assert delivery.feedback_claim(feedback_id=feedback.pk) is None
    feedback.refresh_from_db()
    assert feedback.status == Feedback.Status.SENT
    assert feedback.sent_at is not None


@pytest.mark.django_db(transaction=True)  # published once committed: a real commit
def test_each_change_is_saved_then_published_with_a_growing_version():
    feedback = Feedback.objects.create(email="ada@example.com", message="Hi")
    channel = listen(selectors.status_group(feedback.pk))

    claimed = delivery.feedback_claim(feedback_id=feedback.pk)
    first = receive(channel)
    assert first["type"] == "status.update"
    assert 'data-status="sending"' in first["html"]["en"]
    assert first["version"] == 1 and first["final"] is False

    delivery.feedback_mark_failed(
        feedback_id=claimed.pk, reason=Failure(Reason.SMTP_RECIPIENT, Outcome.PERMANENT)
    )
    second = receive(channel)
    assert second["version"] == 2 and second["final"] is True
    assert 'data-status="failed"' in second["html"]["en"]
    assert "refused the recipient address" in second["html"]["en"]
    stored = Feedback.objects.get(pk=feedback.pk)
    assert stored.status == Feedback.Status.FAILED
    assert stored.version == 2


def test_snapshot_of_a_valid_token_renders_the_current_state():
    from feedback.tokens import feedback_token

    feedback = Feedback.objects.create(email="ada@example.com", message="Hi")
    session = {}
    snapshot = selectors.feedback_snapshot(
        feedback_token(feedback.pk, session=session), session=session
    )
    assert snapshot is not None
    assert snapshot.group == selectors.status_group(feedback.pk)
    assert 'data-status="queued"' in snapshot.html
    assert f'id="status-{feedback.pk}"' in snapshot.html
    assert snapshot.final is False
    assert selectors.feedback_snapshot("forged:token", session=session) is None


def test_a_re_read_renders_only_a_state_newer_than_the_watchers(django_assert_num_queries):
    from feedback.tokens import feedback_token
    from realtime import watch

    feedback = Feedback.objects.create(email="ada@example.com", message="Hi")
    session = {}
    token = feedback_token(feedback.pk, session=session)
    shown = watch.resolve("feedback", token, session=session)
    # A page watching the card its answer rendered, and every re-read: the row alone.
    with django_assert_num_queries(1):
        unchanged = watch.resolve("feedback", token, session=session, newer_than=shown.version)
    assert unchanged.html == "" and unchanged.version == shown.version
    assert unchanged.group == shown.group and unchanged.final is False
    delivery.feedback_claim(feedback_id=feedback.pk)
    newer = watch.resolve("feedback", token, session=session, newer_than=shown.version)
    assert newer.version > shown.version and 'data-status="sending"' in newer.html
    assert watch.resolve("feedback", "forged:token", session=session, newer_than=0) is None


def test_confirmation_email_quotes_the_message():
    feedback = Feedback.objects.create(email="ada@example.com", message="Line one\nLine two")
    email = build_confirmation_email(feedback=feedback)
    assert email.to == ["ada@example.com"]
    assert "> Line one\n> Line two" in email.body
    assert email.extra_headers["Message-ID"].startswith(f"<feedback-{feedback.pk}@")


def test_each_status_change_is_recorded_with_its_time_for_the_timeline(settings):
    settings.FEEDBACK_SEND_DELAY = 0
    feedback = services.feedback_create(email="ada@example.com", message="Hi", enqueue=False)
    delivery.feedback_deliver(feedback_id=feedback.pk)
    events = list(feedback.events.all())
    assert [event.status for event in events] == ["queued", "sending", "sent"]
    assert events[0].at == feedback.created_at
    assert events[0].at <= events[1].at <= events[2].at
    # The rendered status carries the timeline: every step done, with its time.
    html = selectors.feedback_render_status(feedback=Feedback.objects.get(pk=feedback.pk))
    assert html.count('data-state="done"') == 3
    assert html.count('class="timeline__time"') == 3


def test_the_timeline_shows_what_is_still_ahead():
    feedback = services.feedback_create(email="ada@example.com", message="Hi", enqueue=False)
    steps = feedback_timeline(feedback=feedback)
    assert [(step.status, step.state) for step in steps] == [
        ("queued", "current"),
        ("sending", "next"),
        ("sent", "next"),
    ]
    assert steps[0].since_submit == "+0 ms" and steps[1].since_submit == ""
    delivery.feedback_mark_failed(feedback_id=feedback.pk, reason=Failure(Reason.NOT_SENT))
    steps = feedback_timeline(feedback=Feedback.objects.get(pk=feedback.pk))
    assert [(step.status, step.state) for step in steps] == [("queued", "done"), ("failed", "done")]


def test_a_row_without_events_still_shows_its_status():
    feedback = Feedback.objects.create(email="ada@example.com", message="Hi", status="sending")
    assert [(step.status, step.state) for step in feedback_timeline(feedback=feedback)] == [
        ("sending", "current"),
        ("sent", "next"),
    ]


# -- Failures: transient or permanent ------------------------------------------


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (smtplib.SMTPDataError(451, b"Try again later"), True),
        (smtplib.SMTPSenderRefused(421, b"Busy", "a@b.c"), True),
        (smtplib.SMTPRecipientsRefused({"a@b.c": (450, b"Mailbox busy")}), True),
        (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), True),
        (ConnectionRefusedError(111, "Connection refused"), True),
        (TimeoutError("timed out"), True),
        (ConnectionResetError(104, "reset"), True),
        (smtplib.SMTPRecipientsRefused({"a@b.c": (550, b"No such user")}), False),
        (smtplib.SMTPDataError(554, b"Rejected"), False),
        (smtplib.SMTPAuthenticationError(535, b"Bad credentials"), False),
        (smtplib.SMTPNotSupportedError("STARTTLS extension not supported"), False),
    ],
)
def test_smtp_errors_are_classified_transient_or_permanent(error, transient):
    assert smtp.is_transient_send_error(error) is transient
    assert smtp.describe_send_error(error) in Reason  # always a reason a card can say


def test_a_send_error_becomes_a_delivery_error_that_says_if_it_is_transient(settings, smtp_server):
    settings.FEEDBACK_SEND_DELAY = 0
    use_smtp(settings, smtp_server)
    feedback = Feedback.objects.create(email="ada@example.com", message="Hi")
    smtp_server.fail_next(1, code=451, text="Greylisted, try again")
    with pytest.raises(DeliveryError) as transient:
        delivery.feedback_deliver(feedback_id=feedback.pk)
    assert transient.value.transient is True
    assert (transient.value.code, transient.value.server_text) == (451, "Greylisted, try again")

    smtp_server.fail_next(1, code=550, text="No such user", stage="MAIL")
    with pytest.raises(DeliveryError) as permanent:
        delivery.feedback_send_email(feedback=feedback)
    assert permanent.value.transient is False


@pytest.mark.django_db(transaction=True)  # published once committed: a real commit
def test_mark_retrying_stores_the_reason_and_when_the_next_attempt_runs():
    feedback = Feedback.objects.create(email="ada@example.com", message="Hi")
    delivery.feedback_claim(feedback_id=feedback.pk)
    channel = listen(selectors.status_group(feedback.pk))
    at = timezone.now().replace(microsecond=0) + timedelta(seconds=30)
    delivery.feedback_mark_retrying(
        feedback_id=feedback.pk, reason=Failure(Reason.CLOSED), next_retry_at=at
    )
    feedback.refresh_from_db()
    assert feedback.status == Feedback.Status.RETRYING
    assert feedback.next_retry_at == at
    update = receive(channel)
    assert 'data-status="retrying"' in update["html"]["en"]
    assert (
        "Attempt 1 did not go through: The mail server closed the connection."
        in update["html"]["en"]
    )
    assert (
        f'Attempt 2 at <time datetime="{at.isoformat()}">{at:%H:%M:%S} UTC</time>'
        in update["html"]["en"]
    )
    # A retrying row is waiting: the next delivery claims it.
    assert delivery.feedback_claim(feedback_id=feedback.pk).attempts == 2


# -- Send once -----------------------------------------------------------------


def age(feedback: Feedback, seconds: float) -> None:
    """Pretend the row was last changed `seconds` ago."""
    Feedback.objects.filter(pk=feedback.pk).update(
        updated_at=timezone.now() - timedelta(seconds=seconds)
    )


def test_a_row_being_sent_is_not_claimed_until_its_lease_ran_out(settings):
    settings.FEEDBACK_SENDING_LEASE = 60
    feedback = Feedback.objects.create(email="ada@example.com", message="Hi")
    delivery.feedback_claim(feedback_id=feedback.pk)
    age(feedback, 30)
    assert delivery.feedback_claim(feedback_id=feedback.pk) is None  # its worker may be alive
    age(feedback, 61)
    reclaimed = delivery.feedback_claim(feedback_id=feedback.pk)  # its worker died
    assert reclaimed is not None and reclaimed.attempts == 2


def test_the_claim_notes_which_worker_node_made_it():
    feedback = Feedback.objects.create(email="ada@example.com", message="Hi")
    claimed = delivery.feedback_claim(feedback_id=feedback.pk, worker="worker@node-1")
    assert claimed.claimed_by == "worker@node-1"


def test_the_sweeper_takes_back_at_once_a_row_whose_worker_node_is_dead(settings):
    settings.FEEDBACK_SENDING_LEASE = 600
    feedback = Feedback.objects.create(email="ada@example.com", message="Hi")
    # A node that never beat and answers no ping (there is no worker in this test).
    delivery.feedback_claim(feedback_id=feedback.pk, worker="gone@nowhere")
    assert sweeping.feedback_requeue_stuck() == [feedback.pk]  # and enqueued once committed
    feedback.refresh_from_db()
    assert (feedback.status, feedback.failure_text) == ("retrying", str(Reason.WORKER_LOST.label))


def test_a_row_claimed_in_a_web_request_waits_for_its_lease(settings):
    settings.FEEDBACK_SENDING_LEASE = 600
    feedback = Feedback.objects.create(email="ada@example.com", message="Hi")
    delivery.feedback_claim(feedback_id=feedback.pk)  # no worker node: the old way
    assert sweeping.feedback_requeue_stuck() == []
    assert Feedback.objects.get(pk=feedback.pk).status == "sending"


def test_a_sent_row_is_never_claimed_however_old():
    feedback = Feedback.objects.create(email="ada@example.com", message="Hi")
    delivery.feedback_claim(feedback_id=feedback.pk)
    delivery.feedback_mark_sent(feedback_id=feedback.pk)
    age(feedback, 10**6)
    assert delivery.feedback_claim(feedback_id=feedback.pk) is None


def test_deliver_twice_sends_one_email(settings):
    settings.FEEDBACK_SEND_DELAY = 0
    feedback = Feedback.objects.create(email="ada@example.com", message="Hi")
    assert delivery.feedback_deliver(feedback_id=feedback.pk) is not None
    assert delivery.feedback_deliver(feedback_id=feedback.pk) is None
    assert len(mail.outbox) == 1


def test_a_failure_while_closing_after_the_server_accepted_is_not_a_failed_send(
    settings, smtp_server, monkeypatch
):
    """QUIT failing after DATA was accepted must not lead to a second email."""
    settings.FEEDBACK_SEND_DELAY = 0
    use_smtp(settings, smtp_server)
    feedback = Feedback.objects.create(email="ada@example.com", message="Hi")
    original_quit = smtplib.SMTP.quit

    def quit_times_out(self):  # the sink cannot hang on QUIT, so this one call is faked
        original_quit(self)
        raise TimeoutError("timed out saying goodbye")

    monkeypatch.setattr(smtplib.SMTP, "quit", quit_times_out)
    sent = delivery.feedback_deliver(feedback_id=feedback.pk)
    assert sent is not None and sent.status == Feedback.Status.SENT
    assert len(smtp_server.messages) == 1


# -- The sweeper ---------------------------------------------------------------


def test_the_sweeper_requeues_what_nothing_else_will_pick_up(
    settings, django_capture_on_commit_callbacks
):
    settings.FEEDBACK_STUCK_AFTER = 30
    settings.FEEDBACK_SENDING_LEASE = 60
    settings.FEEDBACK_MAX_ATTEMPTS = 3
    make = lambda **fields: Feedback.objects.create(email="a@example.com", message="Hi", **fields)  # noqa: E731
    now = timezone.now()
    fresh_queued = make()
    stuck_queued = make()
    age(stuck_queued, 31)
    lost_retry = make(status="retrying", attempts=1, next_retry_at=now - timedelta(seconds=40))
    age(lost_retry, 45)
    waiting_retry = make(status="retrying", attempts=1, next_retry_at=now + timedelta(seconds=5))
    age(waiting_retry, 45)
    live_send = make(status="sending", attempts=1)
    age(live_send, 20)
    dead_send = make(status="sending", attempts=1)
    age(dead_send, 61)
    dead_last_send = make(status="sending", attempts=3)
    age(dead_last_send, 61)
    sent = make(status="sent", attempts=1)
    age(sent, 10**5)
    failed = make(status="failed", attempts=3)
    age(failed, 10**5)

    with django_capture_on_commit_callbacks() as callbacks:
        requeued = sweeping.feedback_requeue_stuck()
    assert set(requeued) == {stuck_queued.pk, lost_retry.pk, dead_send.pk}
    # three enqueues; the two dead sends' moves, published; "fail" may leave the
    # queue, so it also publishes one queue-wide event
    assert len(callbacks) == 3 + 2 + 1

    dead_send.refresh_from_db()
    assert dead_send.status == Feedback.Status.RETRYING
    assert dead_send.failure_text == str(Reason.WORKER_LOST.label)
    dead_last_send.refresh_from_db()
    assert dead_last_send.status == Feedback.Status.FAILED
    for untouched in (fresh_queued, waiting_retry, live_send, sent, failed):
        status = untouched.status
        untouched.refresh_from_db()
        assert untouched.status == status

    # The next sweep does not repeat this one's work.
    with django_capture_on_commit_callbacks() as callbacks:
        assert sweeping.feedback_requeue_stuck() == []
    assert callbacks == []


def test_resend_queues_a_failed_row_again_with_fresh_attempts(django_capture_on_commit_callbacks):
    failed = Feedback.objects.create(
        email="ada@example.com", message="Hi", status="failed", attempts=5, failure_reason="No."
    )
    sent = Feedback.objects.create(email="ada@example.com", message="Hi", status="sent")
    with django_capture_on_commit_callbacks() as callbacks:
        assert services.feedback_resend(feedback_id=failed.pk) is True
        assert services.feedback_resend(feedback_id=sent.pk) is False  # never twice
    # the failed row's move published, the line's event (it re-enters it), and its enqueue
    assert len(callbacks) == 3
    failed.refresh_from_db()
    assert (failed.status, failed.attempts, failed.failure_text) == ("queued", 0, "")
    sent.refresh_from_db()
    assert sent.status == "sent"


def use_smtp(settings, smtp_server) -> None:
    settings.MAILERS = {
        "default": {
            "BACKEND": "feedback.smtp.EmailBackend",
            "OPTIONS": {"host": smtp_server.host, "port": smtp_server.port, "timeout": 5},
        }
    }
