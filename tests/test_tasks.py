"""The task called directly (Celery's testing guide), sending over a real SMTP server."""

import re
import socket
import time

import pytest
from celery.exceptions import Retry
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone, translation

from feedback import delivery, moves, queue, selectors, services, tasks
from feedback.models import Feedback
from feedback.tasks import send_feedback_email
from realtime.watchers import mark_key

# Claims, conditional updates and the sweeper: also run on PostgreSQL (make test).
pytestmark = [pytest.mark.django_db, pytest.mark.engines]


@pytest.fixture
def smtp_settings(settings, smtp_server):
    settings.MAILERS = {
        "default": {
            "BACKEND": "feedback.smtp.EmailBackend",
            "OPTIONS": {"host": smtp_server.host, "port": smtp_server.port, "timeout": 5},
        }
    }
    settings.FEEDBACK_SEND_DELAY = 0
    settings.DEFAULT_FROM_EMAIL = "Feedback <feedback@example.org>"
    return settings


def test_the_services_enqueue_the_task_by_its_name():
    assert send_feedback_email.name == moves.SEND_TASK


def test_the_task_sends_the_confirmation_over_smtp_and_marks_it_sent(smtp_settings, smtp_server):
    feedback = Feedback.objects.create(email="ada@example.com", message="Great app!\nThanks.")

    send_feedback_email(str(feedback.pk))

    [received] = smtp_server.wait_for(1, timeout=10)
    assert received.rcpt_tos == ["ada@example.com"]
    assert received.mail_from == "feedback@example.org"
    assert received.subject == "Thanks for your feedback"
    assert "> Great app!\n> Thanks." in received.body.replace("\r\n", "\n")
    assert received.message["Message-ID"] == f"<feedback-{feedback.pk}@example.org>"
    feedback.refresh_from_db()
    assert feedback.status == Feedback.Status.SENT
    assert feedback.attempts == 1
    assert feedback.sent_at is not None


def test_running_the_task_again_for_a_sent_row_sends_nothing(smtp_settings, smtp_server):
    feedback = Feedback.objects.create(email="ada@example.com", message="Hi")
    send_feedback_email(str(feedback.pk))
    send_feedback_email(str(feedback.pk))
    assert len(smtp_server.wait_for(1, timeout=10)) == 1
    feedback.refresh_from_db()
    assert feedback.attempts == 1


def test_a_refused_recipient_ends_failed_with_a_plain_reason(smtp_settings, smtp_server):
    smtp_server.fail_next(1, code=550, text="No such user", stage="RCPT")
    feedback = Feedback.objects.create(email="ghost@example.com", message="Hi")

    send_feedback_email(str(feedback.pk))

    feedback.refresh_from_db()
    assert feedback.status == Feedback.Status.FAILED
    assert "refused" in feedback.failure_text
    assert "Traceback" not in feedback.failure_text
    assert smtp_server.messages == []


def make_feedback() -> Feedback:
    return Feedback.objects.create(email="ada@example.com", message="Hi")


def test_a_transient_failure_schedules_a_retry_and_says_when(smtp_settings, smtp_server):
    smtp_settings.FEEDBACK_RETRY_BACKOFF = 8
    feedback = make_feedback()
    smtp_server.fail_next(1, code=451, text="Try again later")
    before = timezone.now()
    with pytest.raises(Retry):
        tasks.send_feedback_email(str(feedback.pk))
    feedback.refresh_from_db()
    assert feedback.status == Feedback.Status.RETRYING
    assert feedback.attempts == 1
    assert feedback.failure_text == (
        "The mail server refused the message: 451 Try again later. "
        "This is temporary: it will be tried again."
    )
    # The first retry waits between half and all of the base delay.
    wait = (feedback.next_retry_at - before).total_seconds()
    assert 4 - 1 <= wait <= 8 + 1
    assert smtp_server.messages == []


def test_a_permanent_failure_fails_at_once(smtp_settings, smtp_server):
    feedback = make_feedback()
    smtp_server.fail_next(1, code=550, text="No such user here", stage="MAIL")
    tasks.send_feedback_email(str(feedback.pk))  # no Retry raised
    feedback.refresh_from_db()
    assert feedback.status == Feedback.Status.FAILED
    assert feedback.attempts == 1
    assert "550" in feedback.failure_text and "No such user here" in feedback.failure_text


def test_after_the_last_attempt_it_fails_with_the_reason(smtp_settings, smtp_server):
    smtp_settings.FEEDBACK_MAX_ATTEMPTS = 2
    feedback = make_feedback()
    smtp_server.fail_next(2, code=421, text="Service busy")
    with pytest.raises(Retry):
        tasks.send_feedback_email(str(feedback.pk))
    tasks.send_feedback_email(str(feedback.pk))  # the retry, run now
    feedback.refresh_from_db()
    assert feedback.status == Feedback.Status.FAILED
    assert feedback.failure_text == (
        "The mail server refused the message: 421 Service busy. (gave up after 2 attempts)"
    )
    assert smtp_server.messages == []


def test_an_unreachable_server_is_retried(settings, unused_tcp_port):
    settings.FEEDBACK_SEND_DELAY = 0
    settings.MAILERS = {
        "default": {
            "BACKEND": "feedback.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": unused_tcp_port, "timeout": 5},
        }
    }
    feedback = make_feedback()
    with pytest.raises(Retry):
        tasks.send_feedback_email(str(feedback.pk))
    feedback.refresh_from_db()
    assert feedback.status == Feedback.Status.RETRYING
    assert feedback.failure_text == (
        "The mail server refused the connection. This is temporary: it will be tried again."
    )


@pytest.mark.parametrize("attempt", [1, 2, 3, 10, 30])
def test_retry_delays_grow_exponentially_with_jitter_up_to_a_ceiling(settings, attempt):
    settings.FEEDBACK_RETRY_BACKOFF = 5
    settings.FEEDBACK_RETRY_BACKOFF_MAX = 300
    ceiling = min(5 * 2 ** (attempt - 1), 300)
    delays = {tasks.retry_delay(attempt) for _ in range(50)}
    assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
    assert len(delays) > 1  # jittered


def test_a_hung_mail_server_times_out_and_is_retried(settings):
    """A server that accepts the connection and never says a word (EMAIL_TIMEOUT)."""
    settings.FEEDBACK_SEND_DELAY = 0
    with socket.create_server(("127.0.0.1", 0)) as silent:
        settings.MAILERS = {
            "default": {
                "BACKEND": "feedback.smtp.EmailBackend",
                "OPTIONS": {"host": "127.0.0.1", "port": silent.getsockname()[1], "timeout": 1},
            }
        }
        feedback = make_feedback()
        started = time.monotonic()
        with pytest.raises(Retry):
            tasks.send_feedback_email(str(feedback.pk))
        assert time.monotonic() - started < 30  # bounded by the timeout, not hung
    feedback.refresh_from_db()
    assert feedback.status == Feedback.Status.RETRYING
    assert feedback.failure_text == (
        "The mail server did not answer in time. This is temporary: it will be tried again."
    )


# -- What one email costs the database -------------------------------------------

TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")


def statements(captured: CaptureQueriesContext) -> list[str]:
    """Each statement run as "VERB table" (transaction control left out)."""
    shapes = []
    for query in captured.captured_queries:
        sql = query["sql"]
        if sql.startswith(TRANSACTION_CONTROL):
            continue
        table = re.search(r'(?:FROM|INTO|UPDATE) "(\w+)"', sql)
        shapes.append(f"{sql.split()[0]} {table.group(1) if table else '?'}")
    return shapes


@pytest.mark.django_db(transaction=True)  # real commits: what runs once committed counts too
@pytest.mark.parametrize("watched", [True, False], ids=["watched", "unwatched"])
def test_one_email_takes_four_statements_and_the_queue_event_three(
    smtp_settings, smtp_server, monkeypatch, watched
):
    """Per move, UPDATE … RETURNING (no read of the row after it) and its event; the status
    partial's timeline, for a watched card only, is carried by the moves' rows, not read
    (feedback/timeline.py's known_after_move); no read of the language before the claim.
    The claim also changes the line: the queue-wide event (published at once here;
    coalesced to a few per second in a drain) reads it, when someone watches the queue."""
    monkeypatch.setattr(queue, "QUEUE_EVENT_INTERVAL", 0)  # published now, on this thread
    queue._queue_events.forget()  # nothing left due from an earlier test
    feedback = services.feedback_create(email="ada@example.com", message="Hi", enqueue=False)
    marks = [mark_key(group, code) for group in (selectors.status_group(feedback.pk),
             queue.QUEUE_GROUP) for code, _name in settings.LANGUAGES]  # fmt: skip
    cache.delete_many(marks)
    if watched:  # the card and the queue, as a page socket watching the card marks them
        cache.set_many(dict.fromkeys(marks, 1))

    with CaptureQueriesContext(connection) as captured:
        send_feedback_email(str(feedback.pk))

    assert len(smtp_server.wait_for(1, timeout=10)) == 1
    move = ["UPDATE feedback_feedback", "INSERT feedback_feedbackevent"]
    # The line, sends under way, last sends: the queue-wide event, for its watchers only.
    line_and_pace = ["SELECT feedback_feedback"] * 3 if watched else []
    assert statements(captured) == [*move, *line_and_pace, *move]
    feedback.refresh_from_db()
    assert (feedback.status, feedback.version) == (Feedback.Status.SENT, 2)


def test_the_task_stores_codes_that_each_reader_reads_in_their_own_language(
    smtp_settings, smtp_server
):
    """Whatever the submitter's language and the worker's, the step and the reason are
    stored as codes and data; the server's words are kept as it sent them."""
    smtp_server.fail_next(1, code=451, text="Try again later")
    feedback = services.feedback_create(
        email="ana@example.com.br", message="Oi", enqueue=False, language="pt-br"
    )
    with translation.override("pt-br"), pytest.raises(Retry):
        send_feedback_email(str(feedback.pk))
    feedback.refresh_from_db()
    assert feedback.status == Feedback.Status.RETRYING
    assert feedback.failure_reason == "smtp-data"
    assert feedback.failure_detail == {
        "outcome": "retrying",
        "smtp_code": 451,
        "smtp_text": "Try again later",
    }
    with translation.override("en"):
        assert feedback.failure_text == (
            "The mail server refused the message: 451 Try again later. "
            "This is temporary: it will be tried again."
        )
    with translation.override("pt-br"):
        assert feedback.failure_text == (
            "O servidor de e-mail recusou a mensagem: 451 Try again later. "
            "É temporário: vamos tentar de novo."
        )
        claimed = delivery.feedback_claim(feedback_id=feedback.pk)
        assert claimed.step == "preparing"
        assert claimed.get_step_display() == "Preparando sua confirmação"
    with translation.override("en"):
        assert claimed.get_step_display() == "Preparing your confirmation"
