"""Reads: a feedback's status as the page, the htmx response and the websocket show it.

The view, the consumer's resolver and the publisher all render through here,
so the status partial is named once.
"""

import math
import uuid
from collections.abc import Mapping, MutableMapping
from datetime import datetime
from typing import Any

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import timezone

from realtime.watch import Snapshot

from .models import Feedback, Status
from .queue import PACE_MAX_AGE, QUEUE_GROUP, epoch_ms, feedback_place
from .submissions import submissions_recent_ids
from .timeline import feedback_timeline
from .tokens import feedback_id_from_token, feedback_token
from .transitions import IN_LINE, is_final

STATUS_PARTIAL = "feedback/detail.html#status"


def status_group(feedback_id: uuid.UUID | str) -> str:
    return f"feedback.{feedback_id}"


def undo_seconds_left(*, feedback: Feedback, now: datetime | None = None) -> int | None:
    """Whole seconds left to undo a queued feedback; None when it cannot be undone any more."""
    if feedback.status not in IN_LINE or feedback.undo_until is None:
        return None
    left = (feedback.undo_until - (now or timezone.now())).total_seconds()
    return math.ceil(left) if left > 0 else None


def feedback_status_context(*, feedback: Feedback) -> dict[str, Any]:
    """What the status partial (and the page around it) needs."""
    undo_left = undo_seconds_left(feedback=feedback)
    return {
        "feedback": feedback,
        "final": is_final(feedback.status),
        "timeline": feedback_timeline(feedback=feedback),
        "place": feedback_place(feedback=feedback, pace_max_age=PACE_MAX_AGE),
        "queued_at_ms": epoch_ms(feedback.created_at),
        "rendered_at_ms": epoch_ms(timezone.now()),
        # Shown (by static/js/queue.js) instead of the place when the queue-wide
        # event lists only the head of the line and this one is further back.
        "queue_line_max": settings.FEEDBACK_QUEUE_LINE_MAX,
        "undo_left": undo_left,
        "Status": Status,
        # Only the local mailbox of development keeps what was sent.
        "outbox_linked": settings.DEV_MAILBOX_IN_USE,
    }


def feedback_session_cards(*, session: MutableMapping[str, Any]) -> list[dict[str, Any]]:
    """This session's submissions, newest first, each as its card (the `watch` partial) needs."""
    ids = submissions_recent_ids(session)
    rows = Feedback.objects.filter(pk__in=ids).prefetch_related("events").in_bulk()
    return [
        {**feedback_status_context(feedback=rows[pk]), "token": feedback_token(pk, session=session)}
        for pk in ids
        if pk in rows  # deleted since: left out
    ]


def feedback_render_status(*, feedback: Feedback) -> str:
    """The status in the active language: the request's, or the socket's."""
    return render_to_string(STATUS_PARTIAL, feedback_status_context(feedback=feedback))


def feedback_group_for_token(token: str, *, session: Mapping[str, Any]) -> str | None:
    """The group a watch token names, or None if the token is not valid; no database read."""
    feedback_id = feedback_id_from_token(token, session=session)
    return None if feedback_id is None else status_group(feedback_id)


def feedback_snapshot(
    token: str, *, session: Mapping[str, Any], newer_than: int = -1
) -> Snapshot | None:
    """The current state for a watch token, or None if the token is not valid
    (forged, expired, or not issued to this session) or its feedback is gone.

    `newer_than`: the version the watcher already shows. A state no newer is not
    rendered (its `html` is empty): the watcher would drop it unsent.
    """
    feedback_id = feedback_id_from_token(token, session=session)
    if feedback_id is None:
        return None
    feedback = Feedback.objects.filter(pk=feedback_id).first()
    if feedback is None:
        return None
    return feedback_status_snapshot(feedback=feedback, render=feedback.version > newer_than)


def feedback_status_snapshot(*, feedback: Feedback, render: bool = True) -> Snapshot:
    return Snapshot(
        group=status_group(feedback.pk),
        html=feedback_render_status(feedback=feedback) if render else "",
        version=feedback.version,
        final=is_final(feedback.status),
        # A queued watcher also hears the queue-wide event, to count its place down.
        also=(QUEUE_GROUP,) if feedback.status in IN_LINE else (),
    )
