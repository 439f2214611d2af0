"""Accepted once, sent once: after the mail server's 250 the receipt (feedback/receipts.py)
is written before anything else, and whatever the database or a kill does next, the
email goes out once and the card ends `sent`.

Real processes: a Celery worker and beat (the sweeper), the session's Redis, an aiosmtpd
server whose DATA handler is the test's hook: it fails the database (or lets the test
kill the worker) at the moment the 250 is given, with no sleep race.
"""

import os
import signal
import threading
import time

import pytest
import redis
from django.db import OperationalError, close_old_connections

from devtools.processes import wait_until
from devtools.smtp_sink import SmtpSink
from feedback import mail, receipts, services, tasks
from feedback.models import Feedback
from feedback.smtp import EmailBackend
from tests.support.holds import DatabaseHold

pytestmark = pytest.mark.engines

# Sweeps every second; hard limit 6 s (soft 4.8 s, lease 8 s): a row left `sending`
# is taken back within the test, and a send that waits out a 3 s lock still ends in time.
QUICK = {
    "FEEDBACK_RETRY_BACKOFF": "1",
    "FEEDBACK_RETRY_BACKOFF_MAX": "2",
    "FEEDBACK_SWEEP_INTERVAL": "1",
    "FEEDBACK_STUCK_AFTER": "1",
    "FEEDBACK_TASK_TIME_LIMIT": "6",
    "FEEDBACK_SEND_DELAY": "0",
    "FEEDBACK_UNDO_SECONDS": "0",
    "DATABASE_BUSY_TIMEOUT": "0.5",  # SQLite
    "DATABASE_STATEMENT_TIMEOUT": "0.5",  # PostgreSQL
}
HOLD_SECONDS = 3.0  # longer than the busy timeout: the `sent` write is refused


class HookedMailServer(SmtpSink):
    """Calls `on_data()` once a message's data has arrived, before answering 250."""

    def __init__(self, on_data) -> None:
        super().__init__()
        self.on_data = on_data

    async def handle_DATA(self, server, session, envelope):
        self.on_data()
        return await super().handle_DATA(server, session, envelope)


def status_of(feedback_id) -> str:
    for _ in range(100):
        try:
            return Feedback.objects.values_list("status", flat=True).get(pk=feedback_id)
        except OperationalError:  # the database restarting: ask again
            close_old_connections()
            time.sleep(0.1)
    raise TimeoutError("the database did not come back")


def messages_for(mail_server, feedback_id) -> list:
    message_id = f"<feedback-{feedback_id}@localhost>"
    return [m for m in mail_server.messages if m.message["Message-ID"] == message_id]


def send_one(start_worker, start_beat, mail_server, **env):
    env = {**QUICK, "EMAIL_PORT": str(mail_server.port), **env}
    worker = start_worker(purge=True, **env)
    start_beat(**env)
    feedback = services.feedback_create(email="ada@example.com", message="Hi", enqueue=False)
    tasks.send_feedback_email.delay(str(feedback.pk))
    return worker, feedback


@pytest.mark.timeout(120)
def test_the_database_refusing_sent_after_the_250_sends_one_email(start_worker, start_beat):
    """The database refuses writes from the 250 on for 3 s (another connection holds the
    lock: SQLite's busy timeout, PostgreSQL's statement timeout, 0.5 s, run out). The
    worker keeps trying to record `sent` until the database takes it."""
    hold = DatabaseHold()
    on_data = lambda: hold.take(release_after=HOLD_SECONDS)  # noqa: E731
    with hold, HookedMailServer(on_data) as mail_server:
        worker, feedback = send_one(start_worker, start_beat, mail_server)
        wait_until(hold.released.is_set, 60, "the database held, then let go")
        wait_until(lambda: status_of(feedback.pk) == "sent", 60, "sent")
        time.sleep(1)  # a second email, if there were one, would be on its way
        assert len(messages_for(mail_server, feedback.pk)) == 1
    assert receipts.receipt_read(feedback_id=feedback.pk) == f"<feedback-{feedback.pk}@localhost>"
    assert "`sent` not recorded" in worker.log_text()


@pytest.mark.timeout(120)
def test_a_database_busy_at_the_claim_is_retried_by_the_task_not_left_to_the_sweeper(
    start_worker, smtp_server
):
    """The claim meets a database locked past its busy timeout: nothing was sent, so the
    task comes back by itself (no beat runs here: a failed task would leave the row queued)."""
    hold = DatabaseHold()
    with hold:
        env = {**QUICK, "EMAIL_PORT": str(smtp_server.port)}
        worker = start_worker(purge=True, **env)
        feedback = services.feedback_create(email="ada@example.com", message="Hi", enqueue=False)
        hold.take(release_after=HOLD_SECONDS)
        tasks.send_feedback_email.delay(str(feedback.pk))
        wait_until(hold.released.is_set, 60, "the database held, then let go")
        wait_until(lambda: status_of(feedback.pk) == "sent", 60, "sent")
    assert len(messages_for(smtp_server, feedback.pk)) == 1
    assert "database busy before the send" in worker.log_text()


@pytest.mark.postgres_only
@pytest.mark.timeout(180)
def test_postgresql_restarted_at_the_250_sends_one_email(start_worker, start_beat, postgres_server):
    """PostgreSQL stops as the 250 is given and comes back 3 s later: the worker's
    connections are gone, `sent` is recorded once it is back, and nothing is sent again."""
    stopped = threading.Event()

    def stop() -> None:
        if not stopped.is_set():
            postgres_server.stop()
            stopped.set()

    with HookedMailServer(stop) as mail_server:
        # A longer limit: the server takes a few seconds to start again.
        _, feedback = send_one(start_worker, start_beat, mail_server, FEEDBACK_TASK_TIME_LIMIT="15")
        wait_until(stopped.is_set, 60, "PostgreSQL stopped at the 250")
        time.sleep(HOLD_SECONDS)  # the outage's length
        # From this thread: a process dies with the thread that started it (devtools).
        postgres_server.start()
        close_old_connections()
        wait_until(lambda: status_of(feedback.pk) == "sent", 60, "sent")
        time.sleep(1)
        assert len(messages_for(mail_server, feedback.pk)) == 1


@pytest.mark.timeout(120)
def test_a_pool_process_killed_right_after_the_250_sends_one_email(start_worker, start_beat):
    """The hook holds the database at the 250 (so `sent` cannot be recorded first), the
    test waits for the receipt, SIGKILLs the pool process, and lets the database go."""
    with DatabaseHold() as hold, HookedMailServer(hold.take) as mail_server:
        worker, feedback = send_one(start_worker, start_beat, mail_server)
        wait_until(hold.taken.is_set, 60, "the 250")
        wait_until(
            lambda: receipts.receipt_read(feedback_id=feedback.pk),  # noqa: B023
            10,
            "the receipt",
        )
        [child] = worker.pool_pids()
        os.kill(child, signal.SIGKILL)
        hold.release()
        wait_until(lambda: status_of(feedback.pk) == "sent", 60, "sent")  # noqa: B023
        time.sleep(1)
        assert len(messages_for(mail_server, feedback.pk)) == 1
        assert len(mail_server.messages) == 1


@pytest.mark.timeout(120)
def test_a_receipt_redis_refused_at_the_250_is_written_before_sent_sticks(
    start_worker, start_beat, redis_url
):
    """Redis refuses writes as the 250 is given (full, `maxmemory`), so the receipt's write
    fails, and the database refuses `sent`. Once Redis takes writes again the worker writes
    the receipt while `sent` is still refused: killed then, its email goes out once."""
    redis_admin = redis.Redis.from_url(redis_url, socket_timeout=5)

    def refuse_writes() -> None:
        redis_admin.config_set("maxmemory", 1)  # with noeviction: every write refused (OOM)
        hold.take()

    try:
        with DatabaseHold() as hold, HookedMailServer(refuse_writes) as mail_server:
            worker, feedback = send_one(start_worker, start_beat, mail_server)
            wait_until(lambda: "its receipt not written" in worker.log_text(), 60, "refused")
            redis_admin.config_set("maxmemory", 0)
            wait_until(
                lambda: receipts.receipt_read(feedback_id=feedback.pk),  # noqa: B023
                10,
                "the receipt, written again",
            )
            [child] = worker.pool_pids()
            os.kill(child, signal.SIGKILL)
            hold.release()
            wait_until(lambda: status_of(feedback.pk) == "sent", 60, "sent")  # noqa: B023
            time.sleep(1)
            assert len(messages_for(mail_server, feedback.pk)) == 1
    finally:
        redis_admin.config_set("maxmemory", 0)


# -- The one window left: between the 250 and the receipt ----------------------------

WINDOW_SENDS = int(os.environ.get("WINDOW_SENDS", "300"))


class StopwatchBackend(EmailBackend):
    """The project's backend, noting when each send_message returned (the 250 was read)."""

    accepted_at: list[float] = []

    def send_message(self, email_message) -> bool:
        sent = super().send_message(email_message)
        StopwatchBackend.accepted_at.append(time.perf_counter())
        return sent


def test_the_window_a_kill_can_still_hit_is_the_250_then_one_redis_write(settings, smtp_server, db):
    """From sendmail's return to the receipt's write acknowledged by Redis, measured
    (printed, not asserted) over WINDOW_SENDS sends through the production path."""
    settings.MAILERS = {
        "default": {
            "BACKEND": f"{__name__}.StopwatchBackend",
            "OPTIONS": {"host": smtp_server.host, "port": smtp_server.port, "timeout": 5},
        }
    }
    feedback = services.feedback_create(email="ada@example.com", message="Hi", enqueue=False)
    widths: list[float] = []

    def accepted(*, message_id: str) -> None:
        receipts.receipt_write(feedback_id=feedback.pk, message_id=message_id)
        widths.append(time.perf_counter() - StopwatchBackend.accepted_at[-1])

    for _ in range(WINDOW_SENDS):
        mail.send_confirmation(feedback=feedback, accepted=accepted)
    mail.kept_mailer.close()

    widths.sort()
    p50, p99 = (widths[int(q * (len(widths) - 1))] * 1e6 for q in (0.5, 0.99))
    print(f"\n250 -> receipt written: p50 {p50:.0f} us, p99 {p99:.0f} us, max "
          f"{widths[-1] * 1e6:.0f} us over {len(widths)} sends")  # fmt: skip
    assert len(widths) == len(smtp_server.wait_for(WINDOW_SENDS)) == WINDOW_SENDS
    assert receipts.receipt_read(feedback_id=feedback.pk) == f"<feedback-{feedback.pk}@localhost>"
