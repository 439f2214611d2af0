"""Reads: a task's card as the page, the htmx poll and the websocket show it, and who may
see it. The tag, the views, the watch and the publisher all render through here."""

import uuid
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.template.loader import render_to_string

from realtime import tokens
from realtime.watch import Snapshot

from .models import LiveTaskResult

KIND = "task"  # data-watch="task/<token>"
SALT = "livetasks.watch"
CARD = "livetasks/card.html"
STATUS_PARTIAL = "livetasks/card.html#status"
# A task's template for its final card (@live_task(result_template=…)), by the task's name.
result_templates: dict[str, str] = {}


def task_group(result_id: uuid.UUID | str) -> str:
    return f"livetasks.{result_id}"


def result_token(result: LiveTaskResult, *, session: Any) -> str:
    return tokens.sign(result.pk.hex, salt=SALT, session=session)


def result_id_from_token(token: str, *, session: Mapping[str, Any]) -> uuid.UUID | None:
    """The result's id, or None for a forged, expired or another session's token."""
    value = tokens.unsign(
        token, salt=SALT, session=session, max_age=settings.LIVETASKS_KEEP_SECONDS
    )
    try:
        return None if value is None else uuid.UUID(value)
    except ValueError:
        return None


def result_for(session: Mapping[str, Any], result_id: uuid.UUID | str) -> LiveTaskResult | None:
    """The result of this id if this session started it (LiveTaskResult.objects.owned_by);
    None otherwise: missing, foreign and malformed look alike."""
    try:
        return LiveTaskResult.objects.owned_by(session).filter(pk=result_id).first()
    except ValidationError:  # not a UUID
        return None


def result_for_token(token: str, *, session: Mapping[str, Any]) -> LiveTaskResult | None:
    """The result a token names if this session owns it; None otherwise (all look alike)."""
    result_id = result_id_from_token(token, session=session)
    return None if result_id is None else result_for(session, result_id)


def result_card_context(*, result: LiveTaskResult) -> dict[str, Any]:
    return {
        "result": result,
        "eta_seconds": result.eta_seconds,
        "result_template": result_templates.get(result.name, "") if result.is_finished else "",
    }


def result_render(*, result: LiveTaskResult) -> str:
    """The status partial in the active language: the request's, or the socket's."""
    return render_to_string(STATUS_PARTIAL, result_card_context(result=result))


def task_group_for_token(token: str, *, session: Mapping[str, Any]) -> str | None:
    """The group a watch token names, or None if it is not valid; no database read."""
    result_id = result_id_from_token(token, session=session)
    return None if result_id is None else task_group(result_id)


def task_snapshot(
    token: str, *, session: Mapping[str, Any], newer_than: int = -1
) -> Snapshot | None:
    result = result_for_token(token, session=session)
    if result is None:
        return None
    return Snapshot(
        group=task_group(result.pk),
        html=result_render(result=result) if result.version > newer_than else "",
        version=result.version,
        final=result.is_finished,
    )
