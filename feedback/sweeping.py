"""The sweeper: takes back what no task will pick up by itself (run by beat)."""

import logging
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from redis.exceptions import RedisError

from workers.presence import dead_workers

from . import receipts
from .models import Feedback
from .moves import enqueue_on_commit, feedback_move
from .transitions import HELD, WAITING, MoveName, unchanged
from .wording import Failure, Reason

logger = logging.getLogger(__name__)


WORKER_LOST = Failure(reason=Reason.WORKER_LOST).fields()


def feedback_requeue_stuck(*, now: datetime | None = None) -> list[uuid.UUID]:
    """Enqueue again the feedback that no task will pick up by itself; return their ids.

    - waiting (`queued`, or `retrying` past its retry time) for longer than
      FEEDBACK_STUCK_AFTER: its task was never published (the broker was down
      at submit) or was lost with its worker;
    - `sending` untouched for longer than FEEDBACK_SENDING_LEASE, or claimed
      by a worker node that is dead (no answer to Celery's remote control, or
      another life: workers.presence), which is noticed in seconds: its worker
      died mid-send. It turns `retrying` (so the person sees why), or
      `failed` once it has used up FEEDBACK_MAX_ATTEMPTS; `sent` if the mail
      server had accepted it (a receipt: receipts.py).

    Enqueuing twice is harmless: the claim lets one delivery through. Each
    requeued waiting row's `updated_at` is touched, so the next sweep leaves
    it alone for another FEEDBACK_STUCK_AFTER.
    """
    now = now or timezone.now()
    stuck = now - timedelta(seconds=settings.FEEDBACK_STUCK_AFTER)
    requeued: list[uuid.UUID] = []

    waiting = Feedback.objects.filter(
        Q(next_retry_at__isnull=True) | Q(next_retry_at__lt=stuck),
        status__in=WAITING,
        updated_at__lt=stuck,
    )
    for feedback_id, updated_at in waiting.values_list("pk", "updated_at"):
        # Not a move (the status stays): a touch, conditional, so a row a
        # worker claimed meanwhile is left alone.
        touched = Feedback.objects.filter(
            pk=feedback_id, status__in=WAITING, updated_at=updated_at
        ).update(updated_at=now)
        if touched:
            requeued.append(feedback_id)
    _enqueue_again(requeued, what="stuck")
    return requeued + feedback_take_back_abandoned(now=now)


def feedback_take_back_abandoned(*, now: datetime | None = None) -> list[uuid.UUID]:
    """The `sending` part of feedback_requeue_stuck alone: rows whose lease ended or whose
    worker node is dead turn `retrying` (or `failed`, attempts used up) and are enqueued.

    Beat also runs it on a queue of its own (settings.FEEDBACK_SWEEP_QUEUE): behind
    a backlog on the sending queue a sweep expires before it runs, and a row a killed
    pool process left `sending` would wait for the whole backlog to drain.
    """
    now = now or timezone.now()
    lease = now - timedelta(seconds=settings.FEEDBACK_SENDING_LEASE)
    requeued: list[uuid.UUID] = []
    held_by = Feedback.objects.filter(status=HELD).exclude(claimed_by="")
    dead = dead_workers(held_by.values_list("claimed_by", flat=True).distinct())
    abandoned = Feedback.objects.filter(
        Q(updated_at__lt=lease) | Q(claimed_by__in=dead), status=HELD
    )
    rows = abandoned.values_list("pk", "version", "attempts")
    for feedback_id, version, attempts in rows:
        as_read = unchanged(version=version)
        accepted = _accepted(feedback_id)
        if accepted is None:
            continue  # Redis cannot say whether it went out: the next sweep asks again
        if accepted:  # its sender died after the server's 250: sent, never again
            feedback_move(MoveName.SENT_ON_RECEIPT, feedback_id=feedback_id, where=as_read)
            continue
        if attempts >= settings.FEEDBACK_MAX_ATTEMPTS:
            feedback_move(MoveName.FAIL, feedback_id=feedback_id, where=as_read, **WORKER_LOST)
        elif feedback_move(
            MoveName.RETRY,
            feedback_id=feedback_id,
            where=as_read,
            next_retry_at=now,
            **WORKER_LOST,
        ):
            requeued.append(feedback_id)

    _enqueue_again(requeued, what="abandoned")
    return requeued


def _accepted(feedback_id: uuid.UUID) -> bool | None:
    """Whether the mail server accepted it (a receipt); None when Redis cannot say."""
    try:
        return receipts.receipt_read(feedback_id=feedback_id) is not None
    except RedisError as error:
        logger.warning(
            "Feedback %s left `sending`: its receipt unreadable (%s)", feedback_id, error
        )
        return None


def _enqueue_again(feedback_ids: list[uuid.UUID], *, what: str) -> None:
    for feedback_id in feedback_ids:
        enqueue_on_commit(feedback_id)
    if feedback_ids:
        logger.info("Re-enqueued %d %s feedback: %s", len(feedback_ids), what, feedback_ids)
