"""The one executor of the transition table: every status change of a Feedback is a move made here.

The allowed moves are the table in transitions.py. A move is saved on the row
first and published to watchers once committed: the row is the truth, a
published update only a hint.
"""

import uuid
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from realtime.publish import publish

from .models import Feedback, FeedbackEvent, Status
from .queue import feedback_queue_changed
from .selectors import feedback_render_status_each_language, status_group
from .transitions import MOVES, NOW, is_final


class MoveError(TypeError):
    """A caller gave a move values it does not take, or left out one it needs."""


def feedback_move(
    name: str, *, feedback_id: uuid.UUID | str, where: Q | None = None, **given: Any
) -> Feedback | None:
    """Make the move `name` of transitions.MOVES on one row; the row after it, or None if refused.

    One conditional UPDATE (`status IN` the move's sources, and `where`: a
    version, a lease), so two processes never both make it. Refused, nothing
    is changed, recorded or published. Watchers are told once the transaction
    commits (at once outside one), so a rolled back move is never shown.
    """
    move = MOVES[name]
    if set(given) != set(move.takes):
        raise MoveError(f"move {name!r} takes {sorted(move.takes)}, got {sorted(given)}")
    now = timezone.now()
    sets = {field: now if value is NOW else value for field, value in move.sets.items()}
    with transaction.atomic():
        feedback = _update_returning(
            Feedback.objects.filter(where or Q(), status__in=move.source),
            feedback_id=feedback_id,
            **sets,
            **given,
            status=move.target,
            version=F("version") + 1,
            updated_at=now,
        )
        if feedback is None:
            return None
        if move.records_event:
            FeedbackEvent.objects.create(feedback=feedback, status=feedback.status, at=now)
        # robust: the move is committed whatever happens to its publishing (a hint).
        transaction.on_commit(partial(feedback_publish, feedback=feedback), robust=True)
        if Status.QUEUED in move.source:
            # The line changed: one queue-wide event, from which every queued
            # page computes its own place (never one publish per watcher).
            transaction.on_commit(feedback_queue_changed, robust=True)
    return feedback


# Every column, in the order Model.from_db takes them.
_ROW = Feedback._meta.concrete_fields


def _update_returning(
    changed: QuerySet[Feedback], *, feedback_id: uuid.UUID | str, **values: Any
) -> Feedback | None:
    """`changed.update(**values)` on the one row `feedback_id`, returning it as it is after.

    One statement, ``UPDATE … RETURNING`` (PostgreSQL, SQLite), where update()
    and a read after it were two: the read was a third of a move's SQL.
    Django's update() returns only a count; QuerySet._update is what
    Model.save() uses for the same (fields as (field, model, value) triples;
    the returned columns come back with their converters applied). A backend
    without RETURNING gets empty rows back: the row is then read after.
    """
    fields = [(Feedback._meta.get_field(name), None, value) for name, value in values.items()]
    rows = changed.filter(pk=feedback_id)._update(fields, returning_fields=_ROW)
    if not rows:
        return None
    if not rows[0]:
        return Feedback.objects.get(pk=feedback_id)
    return Feedback.from_db(changed.db, [field.attname for field in _ROW], rows[0])


def feedback_publish(*, feedback: Feedback) -> bool:
    return publish(
        group=status_group(feedback.pk),
        html=feedback_render_status_each_language(feedback=feedback),
        version=feedback.version,
        final=is_final(feedback.status),
    )


def enqueue(feedback_id: uuid.UUID | str, countdown: float = 0) -> None:
    from .tasks import send_feedback_email

    # A bounded wait for a pooled broker connection (Celery's own waits for
    # ever): past it, LimitExceeded leaves the row queued for the sweeper.
    with send_feedback_email.app.pool.acquire(
        block=True, timeout=settings.FEEDBACK_ENQUEUE_WAIT
    ) as connection:
        send_feedback_email.apply_async(
            args=(str(feedback_id),), countdown=countdown or None, connection=connection
        )


def enqueue_on_commit(feedback_id: uuid.UUID | str, countdown: float = 0) -> None:
    # robust: if the broker is down the caller still gets its answer; the row
    # stays waiting and the sweeper (feedback_requeue_stuck) enqueues it later.
    transaction.on_commit(lambda: enqueue(feedback_id, countdown), robust=True)
