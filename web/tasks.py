from celery import shared_task
from django.conf import settings
from django.utils.module_loading import import_string


@shared_task
def sessions_clear_expired() -> None:
    """Beat job: delete the session rows past their end (Django's `clearsessions`)."""
    import_string(f"{settings.SESSION_ENGINE}.SessionStore").clear_expired()
