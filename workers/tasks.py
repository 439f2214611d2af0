from celery import shared_task

from .presence import workers_census


@shared_task
def take_workers_census() -> int | None:
    """Beat job: how many worker processes consume, kept for the queue's pace."""
    return workers_census()
