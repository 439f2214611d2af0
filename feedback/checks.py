"""System checks: the sending timings an operator can still set against each other.

The soft time limit, the sending lease and Redis's visibility timeout derive from
FEEDBACK_TASK_TIME_LIMIT in settings.py, so they agree by construction.
"""

from django.conf import settings
from django.core.checks import Error, register


@register()
def timeouts_agree(app_configs=None, **kwargs) -> list[Error]:
    errors = []
    hard = settings.CELERY_TASK_TIME_LIMIT
    if not hard or hard <= 0:
        errors.append(Error(
            f"FEEDBACK_TASK_TIME_LIMIT ({hard}) must be above 0.",
            hint="A hung mail server would hold a worker for ever.",
            id="feedback.E001",
        ))  # fmt: skip
    if not 0 < settings.FEEDBACK_RETRY_BACKOFF <= settings.FEEDBACK_RETRY_BACKOFF_MAX:
        errors.append(Error(
            f"FEEDBACK_RETRY_BACKOFF ({settings.FEEDBACK_RETRY_BACKOFF:g}) must be above 0 and "
            f"at most FEEDBACK_RETRY_BACKOFF_MAX ({settings.FEEDBACK_RETRY_BACKOFF_MAX:g}).",
            id="feedback.E002",
        ))  # fmt: skip
    return errors
