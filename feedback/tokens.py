"""Signed watch tokens: only the browser that submitted a feedback may watch it, for a while.

The generic signed, session-bound token of realtime/tokens.py (the id signed with a random
key kept in the submitter's session), with feedback's salt and FEEDBACK_TOKEN_MAX_AGE.
"""

import uuid
from collections.abc import Mapping, MutableMapping
from typing import Any

from django.conf import settings

from realtime.tokens import SESSION_KEY, sign, unsign, watcher_key

__all__ = ["SALT", "SESSION_KEY", "feedback_id_from_token", "feedback_token", "watcher_key"]

SALT = "feedback.watch"


def feedback_token(feedback_id: uuid.UUID, *, session: MutableMapping[str, Any]) -> str:
    return sign(feedback_id.hex, salt=SALT, session=session)


def feedback_id_from_token(token: str, *, session: Mapping[str, Any]) -> uuid.UUID | None:
    """The feedback id, or None for a forged, expired or another session's token."""
    value = unsign(token, salt=SALT, session=session, max_age=settings.FEEDBACK_TOKEN_MAX_AGE)
    try:
        return None if value is None else uuid.UUID(value)
    except ValueError:
        return None
