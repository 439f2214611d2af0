"""Thin tasks: load by id, call a service. The retry policy lives here."""

import logging
import random
from datetime import timedelta

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import OperationalError
from django.utils import timezone

from workers.presence import claimer

from . import delivery, sweeping
from .mail import DeliveryError, log_failed_attempt
from .models import Feedback
from .wording import Reason

logger = logging.getLogger(__name__)


def retry_delay(attempt: int) -> float:
    """Seconds before the retry that follows failed attempt number `attempt`.

    Exponential backoff with jitter: between half and all of the doubled
    delay, so retries of many emails after one outage do not arrive together.
    """
    ceiling = min(
        settings.FEEDBACK_RETRY_BACKOFF * 2 ** max(attempt - 1, 0),
        settings.FEEDBACK_RETRY_BACKOFF_MAX,
    )
    return random.uniform(ceiling / 2, ceiling)


# acks_late and reject_on_worker_lost are also the project's defaults (settings);
# stated here because this task's safety depends on them.
@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def send_feedback_email(self: Task, feedback_id: str) -> None:
    try:
        worker = claimer(self.request.hostname) if self.request.hostname else ""
        delivery.feedback_deliver(feedback_id=feedback_id, worker=worker)
    except delivery.TooEarly as early:
        raise self.retry(countdown=early.wait) from None
    except delivery.SentNotRecorded:
        # The email is out (its receipt says so): the retry records `sent`, it never sends.
        raise self.retry(countdown=retry_delay(self.request.retries + 1)) from None
    except OperationalError as busy:
        # A busy database before the send (the claim, a progress step): nothing went out,
        # so the task comes back later; a failed task would leave the row to the sweeper.
        logger.warning(
            "Feedback %s: database busy before the send (%s); retrying", feedback_id, busy
        )
        raise self.retry(countdown=retry_delay(self.request.retries + 1)) from None
    except SoftTimeLimitExceeded as timeout:
        _retry_or_fail(self, feedback_id, DeliveryError(
            Reason.TOO_LONG, cause=timeout, transient=True
        ))  # fmt: skip
    except DeliveryError as error:
        _retry_or_fail(self, feedback_id, error)


def _retry_or_fail(task: Task, feedback_id: str, error: DeliveryError) -> None:
    # The attempt count is the row's (the claim counts it), not Celery's
    # request.retries: it survives a re-enqueue by the sweeper or a new worker.
    attempts = Feedback.objects.values_list("attempts", flat=True).get(pk=feedback_id)
    retrying = error.transient and attempts < settings.FEEDBACK_MAX_ATTEMPTS
    log_failed_attempt(feedback_id=feedback_id, error=error, attempt=attempts, retrying=retrying)
    if not error.transient:
        delivery.feedback_mark_failed(
            feedback_id=feedback_id, reason=error.reason_for(retrying=False)
        )
        return
    if not retrying:
        delivery.feedback_mark_failed(
            feedback_id=feedback_id, reason=error.reason_for(retrying=False, attempts=attempts)
        )
        return
    delay = retry_delay(attempts)
    delivery.feedback_mark_retrying(
        feedback_id=feedback_id,
        reason=error.reason_for(retrying=True),
        next_retry_at=timezone.now() + timedelta(seconds=delay),
    )
    raise task.retry(countdown=delay)


@shared_task
def requeue_stuck_feedback() -> int:
    """The sweeper, run by beat every FEEDBACK_SWEEP_INTERVAL seconds."""
    return len(sweeping.feedback_requeue_stuck())


@shared_task
def take_back_abandoned_feedback() -> int:
    """The sweeper's `sending` part, run by beat on its own queue (FEEDBACK_SWEEP_QUEUE)."""
    return len(sweeping.feedback_take_back_abandoned())
