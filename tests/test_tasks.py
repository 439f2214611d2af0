"""The task called directly (Celery's testing guide), sending over a real SMTP server."""

import pytest

from feedback.models import Feedback
from feedback.tasks import send_feedback_email

pytestmark = pytest.mark.django_db


@pytest.fixture
def smtp_settings(settings, smtp_server):
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": smtp_server.host, "port": smtp_server.port, "timeout": 5},
        }
    }
    settings.FEEDBACK_SEND_DELAY = 0
    settings.DEFAULT_FROM_EMAIL = "Feedback <feedback@example.org>"
    return settings


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
    assert "refused" in feedback.failure_reason
    assert "Traceback" not in feedback.failure_reason
    assert smtp_server.messages == []
