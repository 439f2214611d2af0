"""Reads: a task's card as the page, the htmx poll and the websocket show it, and who may
see it. The tag, the views, the watch and the publisher all render through here."""

import hashlib
import uuid
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.contrib.auth import SESSION_KEY as USER_SESSION_KEY
from django.template.loader import render_to_string

from realtime import tokens
from realtime.watch import Snapshot

from .models import LiveTaskResult

KIND = "task"  # data-watch="task/<token>"
SALT = "livetasks.watch"
CARD = "livetasks/card.html"
STATUS_PARTIAL = "livetasks/card.html#status"


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


def result_owned_by(result: LiveTaskResult, *, session: Mapping[str, Any]) -> bool:
    """The session that started it and, if one was logged in, the same user."""
    key = session.get(tokens.SESSION_KEY)
    if not isinstance(key, str) or not result.owner_session:
        return False
    if hashlib.sha256(key.encode()).hexdigest() != result.owner_session:
        return False
    return result.owner_id is None or session.get(USER_SESSION_KEY) == str(result.owner_id)


def result_for_token(token: str, *, session: Mapping[str, Any]) -> LiveTaskResult | None:
    """The result a token names if this session owns it; None otherwise (all look alike)."""
    result_id = result_id_from_token(token, session=session)
    if result_id is None:
        return None
    result = LiveTaskResult.objects.filter(pk=result_id).first()
    if result is None or not result_owned_by(result, session=session):
        return None
    return result


def result_card_context(*, result: LiveTaskResult) -> dict[str, Any]:
    return {
        "result": result,
        "eta_seconds": result.eta_seconds,
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
