"""Writes: every change of a LiveTaskResult is a conditional UPDATE made here, which bumps
its version and publishes the card after commit (the row is the truth, a push a hint)."""

import uuid
from functools import partial
from typing import Any

from celery import Task, current_app
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.utils import timezone

from realtime.publish import publish_rendering
from realtime.tokens import watcher_key

from .models import LiveTaskResult, TaskResultStatus, owner_digest
from .selectors import STATUS_PARTIAL, result_card_context, task_group

Status = TaskResultStatus


def result_create(
    *, task: Task, args: list[Any], kwargs: dict[str, Any], cancellable: bool, owner: HttpRequest
) -> LiveTaskResult:
    """A committed READY row; its Celery task is sent once the transaction commits."""
    user = getattr(owner, "user", None)
    with transaction.atomic():
        result = LiveTaskResult.objects.create(
            name=task.name,
            args=args,
            kwargs=kwargs,
            cancellable=cancellable,
            owner=user if user is not None and user.is_authenticated else None,
            owner_session=owner_digest(watcher_key(owner.session)),
        )
        send_on_commit(task, result.pk)
    return result


def send(task: Task, result_id: uuid.UUID) -> None:
    # A bounded wait for a pooled broker connection: past it the row stays READY for the
    # sweeper, and the request that enqueued it still gets its answer.
    with current_app.pool.acquire(block=True, timeout=settings.REDIS_TIMEOUT) as connection:
        task.apply_async(args=(str(result_id),), connection=connection)


def send_on_commit(task: Task, result_id: uuid.UUID) -> None:
    transaction.on_commit(partial(send, task, result_id), robust=True)


def result_move(result_id: uuid.UUID | str, *, where: Q, **values: Any) -> LiveTaskResult | None:
    """Change the row if it matches `where`; the row after, or None (nothing changed)."""
    with transaction.atomic():
        changed = LiveTaskResult.objects.filter(where, pk=result_id).update(
            **values, version=F("version") + 1, updated_at=timezone.now()
        )
        if not changed:
            return None
        result = LiveTaskResult.objects.get(pk=result_id)
        # robust: the change is committed whatever happens to its publishing (a hint).
        transaction.on_commit(partial(result_publish, result=result), robust=True)
    return result


def result_publish(*, result: LiveTaskResult) -> bool:
    return publish_rendering(
        group=task_group(result.pk),
        template_name=STATUS_PARTIAL,
        context=partial(result_card_context, result=result),
        version=result.version,
        final=result.is_finished,
    )


RUNNING_ON = Q(status=Status.RUNNING, cancel_requested_at__isnull=True)


def result_claim(result_id: uuid.UUID | str) -> LiveTaskResult | None:
    """READY to RUNNING, once: a message delivered twice runs the task once."""
    return result_move(
        result_id, where=Q(status=Status.READY), status=Status.RUNNING, started_at=timezone.now()
    )


def result_progress(
    result_id: uuid.UUID | str, *, done: int, total: int | None, step: str
) -> LiveTaskResult | None:
    """None when the task should stop: a cancel was asked, or the sweeper took it back."""
    return result_move(result_id, where=RUNNING_ON, done=done, total=total, step=step)


def result_goes_on(result_id: uuid.UUID | str) -> bool:
    return LiveTaskResult.objects.filter(RUNNING_ON, pk=result_id).exists()


def result_finish(
    result_id: uuid.UUID | str, *, status: Status, error: str = "", **values: Any
) -> LiveTaskResult | None:
    """RUNNING to a final status, with `values` (how far it got, its output, what it
    returned); SUCCESSFUL counts everything done."""
    if status == Status.SUCCESSFUL:
        values["done"] = Coalesce(F("total"), F("done"))
    return result_move(
        result_id, where=Q(status=Status.RUNNING), status=status, error=error,
        finished_at=timezone.now(), **values,
    )  # fmt: skip


def result_cancel(result_id: uuid.UUID | str) -> LiveTaskResult | None:
    """Cancel a cancellable task: READY ends CANCELLED at once; RUNNING is asked to stop,
    and ends CANCELLED at its next progress(). None: too late (finished, or asked already)."""
    now = timezone.now()
    cancellable = Q(cancellable=True, cancel_requested_at__isnull=True)
    return result_move(
        result_id, where=cancellable & Q(status=Status.READY),
        status=Status.CANCELLED, cancel_requested_at=now, finished_at=now,
    ) or result_move(
        result_id, where=cancellable & Q(status=Status.RUNNING), cancel_requested_at=now
    )  # fmt: skip
