"""What a person does to a feedback: submit it, take it back, have it sent again, delete it.

Status changes go through moves.feedback_move (the table in transitions.py);
the send itself is delivery.py.
"""

import uuid
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .delivery import feedback_deliver_in_request
from .models import Feedback, FeedbackEvent, SendMode
from .moves import enqueue_on_commit, feedback_move
from .timeline import KnownEvents
from .transitions import FINAL, MoveName


def feedback_create(
    *,
    email: str,
    message: str,
    enqueue: bool = True,
    undo_seconds: float = 0,
    language: str = settings.LANGUAGE_CODE,
    time_zone: str = "",
) -> Feedback:
    """Store the feedback and (unless told not to) queue its confirmation once committed.

    With `undo_seconds`, no worker may claim it before that many seconds have
    passed (the claim checks `undo_until`), and its task is only due then.
    """
    now = timezone.now()
    undo_until = now + timedelta(seconds=undo_seconds) if undo_seconds > 0 else None
    with transaction.atomic():
        feedback = Feedback.objects.create(
            email=email,
            message=message,
            undo_until=undo_until,
            language=language,
            time_zone=time_zone,
        )
        FeedbackEvent.objects.create(
            feedback=feedback, status=feedback.status, at=feedback.created_at
        )
        # Its one event, carried: the answer's card reads none (timeline.recorded_steps).
        feedback.known_events = KnownEvents(
            version=feedback.version, events=((feedback.status, feedback.created_at),)
        )
        if enqueue:
            enqueue_on_commit(feedback.pk, countdown=undo_seconds)
    return feedback


def feedback_submit(
    *,
    email: str,
    message: str,
    mode: str = SendMode.ASYNC,
    language: str = settings.LANGUAGE_CODE,
    time_zone: str = "",
) -> Feedback:
    """Take a submission, the Celery way or the old way.

    The old way (`sync`) is the "before" of the demo: the very same delivery
    the worker runs, but inside the web request, so the person waits for the
    slow mail service. Only where the send runs differs.
    """
    about = {"email": email, "message": message, "language": language, "time_zone": time_zone}
    if mode != SendMode.SYNC:
        return feedback_create(**about, undo_seconds=settings.FEEDBACK_UNDO_SECONDS)
    feedback = feedback_create(**about, enqueue=False)
    return feedback_deliver_in_request(feedback_id=feedback.pk)


def feedback_cancel(*, feedback_id: uuid.UUID | str) -> Feedback | None:
    """Take a feedback back before it is sent: Undo while queued, "Stop trying" while retrying.

    The same conditional update as every move, so it cannot race a worker:
    if the claim won, nothing changes and None is returned (too late).
    """
    return feedback_move(MoveName.CANCEL, feedback_id=feedback_id)


def feedback_resend(*, feedback_id: uuid.UUID | str) -> bool:
    """Give a failed feedback a fresh set of attempts and queue it (the admin's "resend").

    Only a `failed` row can be resent (the table says so), so a sent email never goes out twice.
    """
    with transaction.atomic():
        if feedback_move(MoveName.RESEND, feedback_id=feedback_id) is None:
            return False
        enqueue_on_commit(feedback_id)
    return True


def feedback_delete(*, feedback_ids: Iterable[uuid.UUID | str]) -> int:
    """Delete those of these feedback that are final; how many were deleted.

    One still waiting or being sent stays: its worker would lose it mid-way.
    The final rows are locked first, so a move (a resend) cannot take one back
    to the queue between the check and the delete.
    """
    with transaction.atomic():
        final = list(
            Feedback.objects.select_for_update()
            .filter(pk__in=list(feedback_ids), status__in=FINAL)
            .values_list("pk", flat=True)
        )
        Feedback.objects.filter(pk__in=final).delete()
    return len(final)
