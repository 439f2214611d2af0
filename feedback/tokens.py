"""Signed watch tokens: only the browser that submitted a feedback may watch it, for a while.

A token signs the feedback's id together with a random key kept in the
submitter's session. It is refused when the signature is wrong, when it is
older than FEEDBACK_TOKEN_MAX_AGE, or when the session presenting it does not
hold that key: a token copied out of a URL (a log, a shared screen, history)
is useless in another browser.
"""

import secrets
import uuid
from collections.abc import Mapping, MutableMapping
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.core import signing
from django.utils.crypto import constant_time_compare

SALT = "feedback.watch"
SESSION_KEY = "feedback.watcher"


def watcher_key(session: MutableMapping[str, Any]) -> str:
    """This browser's random watcher key, created on first use.

    The session gets a new key with it: watch rights never go to a session key
    that someone could have planted before them (docs/decisions/).
    """
    key = session.get(SESSION_KEY)
    if not isinstance(key, str) or not key:
        if isinstance(session, SessionBase):
            session.cycle_key()
        key = secrets.token_urlsafe(16)
        session[SESSION_KEY] = key
    return key


def feedback_token(feedback_id: uuid.UUID, *, session: MutableMapping[str, Any]) -> str:
    return signing.dumps([feedback_id.hex, watcher_key(session)], salt=SALT)


def feedback_id_from_token(token: str, *, session: Mapping[str, Any]) -> uuid.UUID | None:
    """The feedback id, or None for a forged, expired or another session's token."""
    try:
        feedback_hex, key = signing.loads(token, salt=SALT, max_age=settings.FEEDBACK_TOKEN_MAX_AGE)
        feedback_id = uuid.UUID(feedback_hex)
    except (signing.BadSignature, ValueError, TypeError, AttributeError):
        return None  # SignatureExpired is a BadSignature
    expected = session.get(SESSION_KEY)
    if not isinstance(expected, str) or not isinstance(key, str):
        return None
    if not constant_time_compare(key, expected):
        return None
    return feedback_id
