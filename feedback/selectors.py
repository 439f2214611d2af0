"""Reads: a feedback's status as the page, the htmx response and the websocket show it.

The view, the consumer's resolver and the publisher all render through here,
so the status partial is named once.
"""

import uuid
from collections.abc import Mapping, MutableMapping
from typing import Any

from django.conf import settings
from django.template.loader import render_to_string

from realtime.watch import Snapshot

from .models import Feedback, Status
from .submissions import submissions_recent_ids
from .timeline import feedback_timeline
from .tokens import feedback_id_from_token, feedback_token
from .transitions import is_final

STATUS_PARTIAL = "feedback/detail.html#status"


def status_group(feedback_id: uuid.UUID | str) -> str:
    return f"feedback.{feedback_id}"


def feedback_status_context(*, feedback: Feedback) -> dict[str, Any]:
    """What the status partial (and the page around it) needs."""
    return {
        "feedback": feedback,
        "final": is_final(feedback.status),
        "timeline": feedback_timeline(feedback=feedback),
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
    return render_to_string(STATUS_PARTIAL, feedback_status_context(feedback=feedback))


def feedback_group_for_token(token: str, *, session: Mapping[str, Any]) -> str | None:
    """The group a watch token names, or None if the token is not valid; no database read."""
    feedback_id = feedback_id_from_token(token, session=session)
    return None if feedback_id is None else status_group(feedback_id)


def feedback_snapshot(token: str, *, session: Mapping[str, Any]) -> Snapshot | None:
    """The current state for a watch token, or None if the token is not valid
    (forged, expired, or not issued to this session) or its feedback is gone."""
    feedback_id = feedback_id_from_token(token, session=session)
    if feedback_id is None:
        return None
    feedback = Feedback.objects.filter(pk=feedback_id).first()
    if feedback is None:
        return None
    return feedback_status_snapshot(feedback=feedback)


def feedback_status_snapshot(*, feedback: Feedback) -> Snapshot:
    return Snapshot(
        group=status_group(feedback.pk),
        html=feedback_render_status(feedback=feedback),
        version=feedback.version,
        final=is_final(feedback.status),
    )
