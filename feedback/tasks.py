from celery import shared_task

from . import services


@shared_task
def send_feedback_email(feedback_id: str) -> None:
    try:
        services.feedback_deliver(feedback_id=feedback_id)
    except services.DeliveryError as error:
        services.feedback_mark_failed(feedback_id=feedback_id, reason=error.reason)
