"""The sweeper (beat): nothing stays RUNNING or READY for ever, no output is kept for ever."""

import logging
from datetime import datetime, timedelta

from celery import current_app
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from .api import output_storage
from .models import LiveTaskResult, TaskResultStatus
from .services import result_move, send

logger = logging.getLogger(__name__)
Status = TaskResultStatus
WORKER_LOST = "the worker stopped before the task ended (no progress within LIVETASKS_LEASE)"


def live_tasks_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """- RUNNING untouched for LIVETASKS_LEASE seconds: its worker died (every progress()
      touches the row): FAILED, or CANCELLED if a cancel was asked. Its message, delivered
      again (acks_late), finds the row no longer READY and does nothing.
    - READY for LIVETASKS_LEASE seconds: its message was never sent (the broker was down
      at enqueue) or was lost: sent again (the claim lets one run through).
    - finished LIVETASKS_KEEP_SECONDS ago: its output and its row are deleted.
    """
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.LIVETASKS_LEASE)
    counts = {"taken back": 0, "sent again": 0, "deleted": 0}
    running = Q(status=Status.RUNNING, updated_at__lt=stale)
    for result_id, asked in LiveTaskResult.objects.filter(running).values_list(
        "pk", "cancel_requested_at"
    ):
        ended = Status.CANCELLED if asked else Status.FAILED
        error = "" if asked else WORKER_LOST
        if result_move(result_id, where=running, status=ended, error=error, finished_at=now):
            counts["taken back"] += 1
    ready = Q(status=Status.READY, updated_at__lt=stale)
    for result_id, name in LiveTaskResult.objects.filter(ready).values_list("pk", "name"):
        # A touch, not a change anyone sees: the next sweep leaves it alone for a lease.
        if LiveTaskResult.objects.filter(ready, pk=result_id).update(updated_at=now):
            try:
                send(current_app.tasks[name], result_id)
                counts["sent again"] += 1
            except Exception:
                logger.warning("Could not send live task %s again", result_id, exc_info=True)
    old = now - timedelta(seconds=settings.LIVETASKS_KEEP_SECONDS)
    for result in LiveTaskResult.objects.filter(finished_at__lt=old).only("pk", "output_path"):
        if result.output_path:
            output_storage().delete(result.output_path)
        result.delete()
        counts["deleted"] += 1
    return counts
