"""Signed, session-bound watch tokens, for any kind of thing a page watches.

A token signs an id together with a random watcher key kept in the session of
the browser it was made for. It is refused when the signature is wrong, when it
is older than `max_age`, or when the session presenting it does not hold that
key: a token copied out of a URL (a log, a shared screen, history) is useless in
another browser (docs/decisions/0004-signed-session-bound-watch-tokens.md).
Each kind signs with its own salt, so a token of one kind never passes as another's.
"""

import secrets
from collections.abc import Mapping, MutableMapping
from typing import Any

from django.contrib.sessions.backends.base import SessionBase
from django.core import signing
from django.utils.crypto import constant_time_compare

SESSION_KEY = "realtime.watcher"


def watcher_key(session: MutableMapping[str, Any]) -> str:
    """This browser's random watcher key, created on first use.

    The session gets a new key with it: watch rights never go to a session key
    that someone could have planted before them.
    """
    key = session.get(SESSION_KEY)
    if not isinstance(key, str) or not key:
        if isinstance(session, SessionBase):
            session.cycle_key()
        key = secrets.token_urlsafe(16)
        session[SESSION_KEY] = key
    return key


def sign(value: str, *, salt: str, session: MutableMapping[str, Any]) -> str:
    """A token for `value` that only this session can present."""
    return signing.dumps([value, watcher_key(session)], salt=salt)


def unsign(token: str, *, salt: str, session: Mapping[str, Any], max_age: float) -> str | None:
    """The value signed, or None for a forged, expired or another session's token."""
    try:
        value, key = signing.loads(token, salt=salt, max_age=max_age)
    except (signing.BadSignature, ValueError, TypeError):
        return None  # SignatureExpired is a BadSignature
    expected = session.get(SESSION_KEY)
    if not all(isinstance(part, str) for part in (value, key, expected)):
        return None
    if not constant_time_compare(key, expected):
        return None
    return value
