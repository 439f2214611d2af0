"""The submissions of this browser session, newest first, so the page lists them after a reload.

Only ids are kept, in the session: another browser never sees them, and a
watch token for each is made again from the session's own key when the page
is rendered.
"""

import uuid
from collections.abc import MutableMapping
from typing import Any

SESSION_KEY = "feedback.submitted"
KEEP = 20


def submissions_remember(session: MutableMapping[str, Any], *, feedback_id: uuid.UUID) -> None:
    earlier = [hex_id for hex_id in session.get(SESSION_KEY, []) if hex_id != feedback_id.hex]
    session[SESSION_KEY] = [feedback_id.hex, *earlier][:KEEP]


def submissions_recent_ids(session: MutableMapping[str, Any]) -> list[uuid.UUID]:
    ids = []
    for hex_id in session.get(SESSION_KEY, []):
        try:
            ids.append(uuid.UUID(hex_id))
        except (ValueError, TypeError, AttributeError):
            continue  # not something we wrote: skip it, never fail the page
    return ids
