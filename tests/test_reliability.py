"""Nothing lost: SMTP failures, duplicate tasks, killed workers, Redis down.

Real processes throughout: a Celery worker (with beat, where the sweeper
matters), the session's Redis, aiosmtpd, daphne. Each wait is bounded; the
figures (kill trials, Redis recovery time) are printed, never asserted.
"""

import os
import random
import re
import signal
import socket
import sys
import time
from collections.abc import Callable

import httpx
import pytest

from feedback import services, tasks
from feedback.models import Feedback
from tests.support.layer import LayerListener
from tests.support.processes import ManagedProcess

# Fast retries and a short sweep, so failures resolve within a test's time.
QUICK = {
    "FEEDBACK_RETRY_BACKOFF": "1.5",
    "FEEDBACK_RETRY_BACKOFF_MAX": "3",
    "FEEDBACK_SWEEP_INTERVAL": "1",
    "FEEDBACK_STUCK_AFTER": "1",
    # Hard limit 3 s (soft 2.4 s), so a dead worker's lease runs out after 5 s.
    "FEEDBACK_TASK_TIME_LIMIT": "3",
}


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"not {what} within {timeout:g}s")
        time.sleep(0.05)


def status_of(feedback_id) -> str:
    return Feedback.objects.values_list("status", flat=True).get(pk=feedback_id)


def messages_for(smtp_server, feedback_id) -> list:
    message_id = f"<feedback-{feedback_id}@localhost>"
    return [m for m in smtp_server.messages if m.message["Message-ID"] == message_id]


class CeleryBeat(ManagedProcess):
    name = "celery beat"

    def wait_ready(self) -> None:
        self.wait_for_log(r"beat: Starting", timeout=30)


@pytest.fixture
def beat(app_env, tmp_path):
    """Celery beat, as `make run` starts it, with the sweeper every second."""
    process = CeleryBeat(
        [sys.executable, "-m", "celery", "-A", "django_celery", "beat", "--loglevel=INFO",
         f"--schedule={tmp_path / 'beat-schedule'}"],
        env={**app_env, **QUICK},
        log_path=tmp_path / "beat.log",
    )  # fmt: skip
    try:
        yield process.start()
    finally:
        process.stop()


class GroupListener(LayerListener):
    """Everything published for one feedback, as its watchers would get it."""

    def __init__(self, feedback_id) -> None:
        super().__init__(services.status_group(feedback_id))


def statuses(events: list[dict]) -> list[str]:
    return [re.search(r'data-status="(\w+)"', e["html"]).group(1) for e in events]


def submit(*, enqueue: bool = False) -> Feedback:
    return services.feedback_create(email="ada@example.com", message="Hello", enqueue=enqueue)


# -- SMTP failures ---------------------------------------------------------------


def test_smtp_refusing_then_accepting_retries_then_sends_one_email(start_worker, smtp_server):
    smtp_server.fail_next(1, code=451, text="Greylisted, try again")
    worker = start_worker(purge=True, **QUICK)
    feedback = submit()
    listener = GroupListener(feedback.pk)
    tasks.send_feedback_email.delay(str(feedback.pk))

    events = listener.until_final(timeout=30)
    assert statuses(events)[-1] == "sent"
    assert "retrying" in statuses(events)
    retrying = next(e["html"] for e in events if 'data-status="retrying"' in e["html"])
    assert (
        "Attempt 1 did not go through: The mail server refused the message: "
        "451 Greylisted, try again. This is temporary: it will be tried again."
    ) in retrying
    assert re.search(r"Attempt 2 at <time datetime=\"[^\"]+\">\d\d:\d\d:\d\d UTC</time>", retrying)
    versions = [e["version"] for e in events]
    assert versions == sorted(versions)

    feedback.refresh_from_db()
    assert (feedback.status, feedback.attempts) == ("sent", 2)
    assert len(smtp_server.refusals) == 1
    assert len(messages_for(smtp_server, feedback.pk)) == 1
    worker.wait_for_log(r"Retry in \d", timeout=5)


def test_a_permanent_refusal_fails_at_once_without_retrying(start_worker, smtp_server):
    smtp_server.fail_next(5, code=550, text="No such user here", stage="MAIL")
    worker = start_worker(purge=True, **QUICK)
    feedback = submit()
    listener = GroupListener(feedback.pk)
    tasks.send_feedback_email.delay(str(feedback.pk))

    events = listener.until_final(timeout=30)
    assert statuses(events)[-1] == "failed"
    assert "retrying" not in statuses(events)
    assert (
        "Not sent: The mail server refused the sender address: 550 No such user here. "
        "This is permanent: it will not be tried again."
    ) in events[-1]["html"]
    # Longer than a retry would wait: still one attempt.
    time.sleep(2 * float(QUICK["FEEDBACK_RETRY_BACKOFF"]))
    feedback.refresh_from_db()
    assert (feedback.status, feedback.attempts) == ("failed", 1)
    assert len(smtp_server.refusals) == 1
    assert smtp_server.messages == []
    assert "Retry in" not in worker.log_text()


# -- Send once ---------------------------------------------------------------------


def test_the_same_task_delivered_twice_and_a_sent_row_send_one_email(start_worker, smtp_server):
    # Two pool processes and a send slow enough for both deliveries to overlap.
    worker = start_worker(purge=True, concurrency=2, FEEDBACK_SEND_DELAY="1", **QUICK)
    feedback = submit()
    for _ in range(2):
        tasks.send_feedback_email.delay(str(feedback.pk))
    wait_until(lambda: status_of(feedback.pk) == "sent", 30, "sent")
    succeeded = r"send_feedback_email\[[^\]]+\] succeeded"
    wait_until(lambda: len(re.findall(succeeded, worker.log_text())) >= 2, 15, "both ran")

    tasks.send_feedback_email.delay(str(feedback.pk))  # again, for a row already sent
    wait_until(lambda: len(re.findall(succeeded, worker.log_text())) >= 3, 15, "the third ran")
    assert len(messages_for(smtp_server, feedback.pk)) == 1
    assert len(smtp_server.messages) == 1


# -- A worker killed mid-send ----------------------------------------------------------

KILL_TRIALS = int(os.environ.get("KILL_TRIALS", "4"))


@pytest.mark.timeout(60 + 45 * KILL_TRIALS)
def test_a_worker_killed_mid_send_still_sends_exactly_once(start_worker, beat, smtp_server):
    """SIGKILL during the send delay, then the send goes through once.

    Odd trials kill the pool process that runs the task (the worker rejects
    the task back to the queue and starts a new process); even trials kill the
    whole worker and start a new one. Either way the row is left in `sending`
    and is taken again once its lease ran out.
    """
    delay = 1.0
    env = {"FEEDBACK_SEND_DELAY": str(delay)}
    worker = start_worker(purge=True, **QUICK, **env)
    lost, duplicates, recoveries = [], [], []
    for trial in range(1, KILL_TRIALS + 1):
        feedback = submit(enqueue=True)
        wait_until(lambda: status_of(feedback.pk) == "sending", 30, "sending")  # noqa: B023
        time.sleep(random.uniform(0.05, delay * 0.8))  # somewhere in the send delay
        killed_at = time.monotonic()
        if trial % 2:
            [child] = worker.pool_pids()
            os.kill(child, signal.SIGKILL)
        else:
            worker.kill_group(signal.SIGKILL)
            worker.wait(10)
            worker = start_worker(**QUICK, **env)
        try:
            wait_until(lambda: status_of(feedback.pk) == "sent", 30, "sent")  # noqa: B023
            recoveries.append(time.monotonic() - killed_at)
        except TimeoutError:
            lost.append(feedback.pk)
        # Leave time for a second email to show up, if there were one.
        time.sleep(0.5)
        if len(messages_for(smtp_server, feedback.pk)) > 1:
            duplicates.append(feedback.pk)

    print(
        f"\nkill test: {KILL_TRIALS} trials, {len(lost)} lost, {len(duplicates)} duplicates, "
        f"recovered in {min(recoveries, default=0):.1f}-{max(recoveries, default=0):.1f} s"
    )
    assert lost == []
    assert duplicates == []
    assert len(smtp_server.messages) == KILL_TRIALS


# -- Redis down when someone submits ------------------------------------------------


@pytest.mark.timeout(180)
def test_redis_down_at_submit_keeps_the_row_and_sends_once_redis_is_back(
    start_worker, beat, start_daphne, smtp_server, redis_server
):
    start_worker(purge=True, **QUICK)
    web = start_daphne()
    with httpx.Client(base_url=web.url, timeout=30) as browser:
        page = browser.get("/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)

        redis_server.stop()
        started = time.monotonic()
        response = browser.post(
            "/",
            data={"email": "ada@example.com", "message": "Hi", "csrfmiddlewaretoken": token},
            headers={"HX-Request": "true"},
        )
        answered = time.monotonic() - started

    assert response.status_code == 200
    assert 'data-status="queued"' in response.text
    feedback = Feedback.objects.get()
    time.sleep(2)  # a while with Redis down: nothing goes out, nothing is lost
    assert status_of(feedback.pk) == "queued"
    assert smtp_server.messages == []

    redis_server.start()
    back = time.monotonic()
    wait_until(lambda: status_of(feedback.pk) == "sent", 90, "sent after Redis came back")
    recovery = time.monotonic() - back
    print(
        f"\nredis down: answered in {answered:.2f} s; sent {recovery:.1f} s after Redis came back"
    )
    assert len(messages_for(smtp_server, feedback.pk)) == 1


def test_a_send_over_the_soft_time_limit_is_retried_then_fails(start_worker, smtp_server):
    # Soft limit 1.6 s, a "mail service" that takes 3 s: every attempt runs out of time.
    start_worker(
        purge=True,
        **{**QUICK, "FEEDBACK_TASK_TIME_LIMIT": "2", "FEEDBACK_MAX_ATTEMPTS": "2"},
        FEEDBACK_SEND_DELAY="3",
    )
    feedback = submit()
    listener = GroupListener(feedback.pk)
    # Time limits travel in the message, from the publisher's settings (the
    # web's, in production the same as the worker's): this test publishes.
    tasks.send_feedback_email.apply_async((str(feedback.pk),), time_limit=2, soft_time_limit=1.6)
    events = listener.until_final(timeout=60)
    assert statuses(events)[-1] == "failed"
    assert "retrying" in statuses(events)
    feedback.refresh_from_db()
    assert feedback.attempts == 2
    assert feedback.failure_reason == f"{tasks.TOOK_TOO_LONG} (gave up after 2 attempts)"
    assert smtp_server.messages == []


def test_a_redis_that_never_answers_does_not_hang_a_submission(start_daphne, smtp_server):
    """Worse than down: connections are accepted and then nothing is ever said."""
    with socket.create_server(("127.0.0.1", 0), backlog=64) as silent:
        web = start_daphne(REDIS_URL=f"redis://127.0.0.1:{silent.getsockname()[1]}/0")
        # A hang would end in httpx's ReadTimeout: socket timeouts bound every Redis call.
        with httpx.Client(base_url=web.url, timeout=60) as browser:
            page = browser.get("/")
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
            started = time.monotonic()
            response = browser.post(
                "/",
                data={"email": "ada@example.com", "message": "Hi", "csrfmiddlewaretoken": token},
                headers={"HX-Request": "true"},
            )
            answered = time.monotonic() - started
    print(f"\nsilent redis: answered in {answered:.1f} s")
    assert response.status_code == 200
    assert 'data-status="queued"' in response.text
    assert Feedback.objects.get().status == "queued"  # kept, for the sweeper
