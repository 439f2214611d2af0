"""System checks: the timeouts the README says must agree, checked at startup.

`manage.py check` (and every runserver, worker and daphne start through
Django's checks) reports an error when a setting breaks one of the rules in
settings.py: the soft time limit below the hard one, the sending lease above
the hard limit (or a live send is taken from its worker), and Redis's
visibility timeout the same in Celery's three places and longer than the
longest retry delay plus a run (or a waiting retry is delivered twice).
"""

from django.conf import settings
from django.core.checks import Error, register


@register()
def timeouts_agree(app_configs=None, **kwargs) -> list[Error]:
    errors = []
    hard = settings.CELERY_TASK_TIME_LIMIT
    soft = settings.CELERY_TASK_SOFT_TIME_LIMIT
    if not soft or not hard or soft >= hard:
        errors.append(Error(
            f"The soft time limit ({soft}) must be set and below the hard one ({hard}).",
            hint="Both come from FEEDBACK_TASK_TIME_LIMIT (the soft one is 80 % of it).",
            id="feedback.E001",
        ))  # fmt: skip
    if (hard or 0) >= settings.FEEDBACK_SENDING_LEASE:
        errors.append(Error(
            f"FEEDBACK_SENDING_LEASE ({settings.FEEDBACK_SENDING_LEASE} s) must be longer than "
            f"the task's hard time limit ({hard} s): a live send would be taken from its worker.",
            id="feedback.E002",
        ))  # fmt: skip
    places = {
        "CELERY_VISIBILITY_TIMEOUT": getattr(settings, "CELERY_VISIBILITY_TIMEOUT", None),
        "CELERY_BROKER_TRANSPORT_OPTIONS": settings.CELERY_BROKER_TRANSPORT_OPTIONS.get(
            "visibility_timeout"
        ),
        "CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS": (
            settings.CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS.get("visibility_timeout")
        ),
    }
    if len(set(places.values())) != 1 or None in places.values():
        errors.append(Error(
            f"Redis's visibility_timeout differs between Celery's places: {places}.",
            hint="Celery's Redis docs ask for the same value in all three.",
            id="feedback.E003",
        ))  # fmt: skip
    visibility = places["CELERY_BROKER_TRANSPORT_OPTIONS"] or 0
    longest_wait = settings.FEEDBACK_RETRY_BACKOFF_MAX + (hard or 0)
    if visibility <= longest_wait:
        errors.append(Error(
            f"Redis's visibility_timeout ({visibility} s) must be longer than the longest retry "
            f"delay plus a run ({longest_wait} s): a waiting retry would be delivered twice.",
            id="feedback.E004",
        ))  # fmt: skip
    return errors
