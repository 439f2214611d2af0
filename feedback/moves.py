"""The one executor of the transition table: every status change of a Feedback is a move made here.

The allowed moves are the table in transitions.py. A move is saved on the row
first and published to watchers once committed: the row is the truth, a
published update only a hint.
"""

import uuid
from functools import partial
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import connections, router, transaction
from django.utils import timezone

from realtime.publish import publish_rendering

from .models import Feedback, FeedbackEvent
from .queue import feedback_queue_changed
from .selectors import STATUS_PARTIAL, feedback_status_context, status_group
from .timeline import known_after_move
from .transitions import MOVES, NOW, ONE_MORE, MoveName, Where, is_final


class MoveError(TypeError):
    """A caller gave a move values it does not take, or left out one it needs."""


def feedback_move(
    name: MoveName,
    *,
    feedback_id: uuid.UUID | str,
    where: Where | None = None,
    last_seen: Feedback | None = None,
    **given: Any,
) -> Feedback | None:
    """Make the move `name` of transitions.MOVES on one row; the row after it, or None if refused.

    One conditional UPDATE (`status IN` the move's sources, and `where`: a
    version, a lease), so two processes never both make it. Refused, nothing
    is changed, recorded or published. Watchers are told once the transaction
    commits (at once outside one), so a rolled back move is never shown.

    The row returned carries its events when they are known without a read
    (timeline.known_after_move; `last_seen`: the row as the caller's last move
    returned it), so publishing it reads none.
    """
    move = MOVES[name]
    if set(given) != set(move.takes):
        raise MoveError(f"move {name!r} takes {sorted(move.takes)}, got {sorted(given)}")
    now = timezone.now()
    sets = {field: now if value is NOW else value for field, value in move.sets.items()}
    with transaction.atomic():
        feedback = _update_returning(
            feedback_id=feedback_id,
            conditions=(
                Where(
                    f"status IN ({', '.join(['%s'] * len(move.source))})",
                    tuple(("status", status) for status in sorted(move.source)),
                ),
                *([where] if where else []),
            ),  # fmt: skip
            values={**sets, **given, "status": move.target, "version": ONE_MORE, "updated_at": now},
        )
        if feedback is None:
            return None
        recorded = ((feedback.status, now),) if move.records_event else ()
        if recorded:
            FeedbackEvent.objects.create(feedback=feedback, status=feedback.status, at=now)
        feedback.known_events = known_after_move(
            feedback=feedback, last_seen=last_seen, recorded=recorded
        )
        # robust: the move is committed whatever happens to its publishing (a hint).
        transaction.on_commit(partial(feedback_publish, feedback=feedback), robust=True)
        if move.changes_line:
            # One queue-wide event, from which every page in the line computes
            # its own place (never one publish per watcher).
            transaction.on_commit(feedback_queue_changed, robust=True)
    return feedback


def _update_returning(
    *, feedback_id: uuid.UUID | str, conditions: tuple[Where, ...], values: dict[str, Any]
) -> Feedback | None:
    """Set `values` on the row `feedback_id` if it meets every condition; the row after, or None.

    One statement, ``UPDATE … WHERE … RETURNING`` (PostgreSQL; SQLite 3.35 and
    later), written here, run through raw(), which converts the returned columns
    as a query does. Under PostgreSQL's READ COMMITTED an UPDATE that waited for
    another checks its WHERE again against the row the other left, and computes
    ONE_MORE on it (docs/decisions/, a move is one hand-written UPDATE).
    """
    db = router.db_for_write(Feedback)
    connection = connections[db]
    quote = connection.ops.quote_name
    meta = Feedback._meta
    assignments, params = [], []
    for name, value in values.items():
        column = quote(meta.get_field(name).column)
        if value is ONE_MORE:
            assignments.append(f"{column} = {column} + 1")
        else:
            assignments.append(f"{column} = %s")
            params.append(meta.get_field(name).get_db_prep_save(value, connection=connection))
    where = [f"{quote(meta.pk.column)} = %s"]
    params.append(meta.pk.get_db_prep_value(feedback_id, connection=connection))
    for condition in conditions:
        where.append(f"({condition.sql})")
        params.extend(
            meta.get_field(name).get_db_prep_value(value, connection=connection)
            for name, value in condition.values
        )
    returning = ", ".join(quote(field.column) for field in meta.concrete_fields)
    sql = (
        f"UPDATE {quote(meta.db_table)} SET {', '.join(assignments)}"
        f" WHERE {' AND '.join(where)} RETURNING {returning}"
    )
    moved = list(Feedback.objects.db_manager(db).raw(sql, params))
    return moved[0] if moved else None


def feedback_publish(*, feedback: Feedback) -> bool:
    return publish_rendering(
        group=status_group(feedback.pk),
        template_name=STATUS_PARTIAL,
        context=partial(feedback_status_context, feedback=feedback),
        version=feedback.version,
        final=is_final(feedback.status),
    )


# Found by name in Celery's registry (apps.py registers the tasks in every process): the
# task module imports the services, so they do not import it. The registered task, not a
# bare send by name, puts its options (time limits, ignore_result) in the message.
SEND_TASK = "feedback.tasks.send_feedback_email"


def enqueue(feedback_id: uuid.UUID | str, countdown: float = 0) -> None:
    task = current_app.tasks[SEND_TASK]
    # A bounded wait for a pooled broker connection (Celery's own waits for
    # ever): past it, LimitExceeded leaves the row queued for the sweeper.
    with current_app.pool.acquire(block=True, timeout=settings.FEEDBACK_ENQUEUE_WAIT) as connection:
        task.apply_async(
            args=(str(feedback_id),), countdown=countdown or None, connection=connection
        )


def enqueue_on_commit(feedback_id: uuid.UUID | str, countdown: float = 0) -> None:
    # robust: if the broker is down the caller still gets its answer; the row
    # stays waiting and the sweeper (feedback_requeue_stuck) enqueues it later.
    transaction.on_commit(lambda: enqueue(feedback_id, countdown), robust=True)
