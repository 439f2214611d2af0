import smtplib

from celery import shared_task

from . import services


@shared_task
def send_feedback_email(feedback_id: str) -> None:
    feedback = services.feedback_claim(feedback_id=feedback_id)
    if feedback is None:
        return  # already sent, or being sent by another delivery of this task
    try:
        services.feedback_send_email(feedback=feedback)
    except (smtplib.SMTPException, OSError) as error:
        services.feedback_mark_failed(
            feedback=feedback, reason=services.describe_send_error(error)
        )
        return
    services.feedback_mark_sent(feedback=feedback)
