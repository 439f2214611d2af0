"""What reaches a real worker: the enqueue after submit and the admin's resend.

The services only queue on commit, so counting on-commit callbacks proves
little; here the callbacks run (``app_env`` brings a transactional database),
a real worker takes the task and the email reaches the real SMTP server.
"""

import time

from feedback import services
from feedback.models import Feedback


def wait_for_status(feedback_id, status: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while Feedback.objects.values_list("status", flat=True).get(pk=feedback_id) != status:
        if time.monotonic() > deadline:
            raise TimeoutError(f"not {status} within {timeout:g}s")
        time.sleep(0.05)


def test_a_submission_is_queued_once_committed_and_a_worker_sends_it(start_worker, smtp_server):
    start_worker(purge=True, FEEDBACK_SEND_DELAY="0")
    feedback = services.feedback_create(email="ada@example.com", message="Hello, worker")
    [received] = smtp_server.wait_for(1, timeout=30)
    assert received.rcpt_tos == ["ada@example.com"]
    assert received.message["Message-ID"] == f"<feedback-{feedback.pk}@localhost>"
    wait_for_status(feedback.pk, "sent")


def test_resend_hands_a_failed_feedback_to_a_worker_that_sends_it(start_worker, smtp_server):
    failed = Feedback.objects.create(
        email="grace@example.com", message="Again", status="failed", attempts=5,
        failure_reason="The mail server answered 550.",
    )  # fmt: skip
    start_worker(purge=True, FEEDBACK_SEND_DELAY="0")
    assert services.feedback_resend(feedback_id=failed.pk) is True
    [received] = smtp_server.wait_for(1, timeout=30)
    assert received.rcpt_tos == ["grace@example.com"]
    assert received.message["Message-ID"] == f"<feedback-{failed.pk}@localhost>"
    wait_for_status(failed.pk, "sent")
    failed.refresh_from_db()
    assert (failed.attempts, failed.failure_text) == (1, "")
