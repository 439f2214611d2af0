"""Django's database sessions: fewer statements when the key changes, and an old
key that keeps working for a short grace.

Each submission gives the session a new key (feedback.views: watch rights go to
this session, a planted key loses them). Django's `cycle_key` writes the new
row at once (a SELECT to check the random key is free, an INSERT), deletes
the old one (a SELECT, a DELETE), and the session middleware then saves the
new one again at the end of the request (an UPDATE). Here the old row is not
deleted: one UPDATE moves its `expire_date` to now + SESSION_ROTATED_GRACE_SECONDS
(never later than it was), and the new row is written once, by that save: an
INSERT, which fails on the (unlikely) taken key and is then tried with another,
as Django's own `create` does.

Why the grace. Requests already on their way with the old key (another tab
submitting at the same instant, a page socket whose handshake left just before)
find the old row as it was and its watcher key with it, so every watch token
of this browser still validates; without it they got an empty session and a
new watcher key (the other tab's cards stopped updating) or a 4401. A
submission made with the old key cycles again, to a key of its own.

Why the fixation protection holds. The old row's data is never written after
its key was cycled: the UPDATE touches `expire_date` only, and the submission
that cycled it (and any later one made with it) is remembered in the new row.
A request that loads a row in its last grace seconds and changes the session
saves it under a new key too (`save`), so the old row is never given back a
long life, and a cycle never moves its end later. So a key an attacker planted
only ever holds what was in it before the victim's first submission, and only
for the grace: it lists none of the victim's submissions, and a planted session
that had never submitted holds no watcher key (the victim's is made on the new
key, after the cycle), so it validates none of the victim's tokens either. Its
end is now + grace, and Django's store treats a row whose `expire_date` is past
as absent (`_get_session_from_db` reads `expire_date__gt=now`): the key then
loads as an empty session, and a page socket that carries it gets 4401. If the
planted session had submitted (it holds the attacker's own watcher key, which
the victim's tokens are then signed with, as without the grace), the attacker
can use it for those grace seconds after the victim's submission, without a
way to list what the victim sent. Django's own cycles (login, password change)
keep the pre-login data, and a session whose password hash no longer matches is
logged out by Django anyway.

With a grace of 0 the old row is deleted at once, as before. Expired rows are
deleted by `sessions_clear_expired`, a beat job (settings.CELERY_BEAT_SCHEDULE).
"""

import datetime

from celery import shared_task
from django.conf import settings
from django.contrib.sessions.backends.base import VALID_KEY_CHARS
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.utils import timezone
from django.utils.crypto import get_random_string


def grace() -> datetime.timedelta:
    return datetime.timedelta(seconds=settings.SESSION_ROTATED_GRACE_SECONDS)


class SessionStore(DatabaseSessionStore):
    # The row loaded ends within the grace: rotated away (or at the very end of its life).
    _ending = False

    def cycle_key(self) -> None:
        data = self._session
        key = self.session_key
        self._session_key = None  # the save at the end of the request creates the new row
        self._session_cache = data
        self.modified = True
        if not key:
            return
        if grace() <= datetime.timedelta(0):
            self.delete(key)
            return
        until = timezone.now() + grace()
        # One UPDATE, of the end alone; a row already ending sooner is left as it is.
        self.model.objects.filter(session_key=key, expire_date__gt=until).update(expire_date=until)

    def _get_session_from_db(self):
        row = super()._get_session_from_db()
        self._ending = row is not None and row.expire_date <= timezone.now() + grace()
        return row

    async def _aget_session_from_db(self):
        row = await super()._aget_session_from_db()
        self._ending = row is not None and row.expire_date <= timezone.now() + grace()
        return row

    def save(self, must_create: bool = False) -> None:
        if self._ending and not must_create:
            # Changed under a key in its grace: written under a new key, the old row
            # keeps its short end (an INSERT instead of the UPDATE: no more statements).
            self._ending = False
            self._session_key = None
        super().save(must_create=must_create)

    async def asave(self, must_create: bool = False) -> None:
        if self._ending and not must_create:
            self._ending = False
            self._session_key = None
        await super().asave(must_create=must_create)

    def _get_new_session_key(self) -> str:
        # No SELECT first: create() inserts with must_create, and a taken key
        # raises CreateError there, which makes it try another.
        return get_random_string(32, VALID_KEY_CHARS)

    def delete(self, session_key: str | None = None) -> None:
        if session_key is None:
            session_key = self.session_key
        if session_key is not None:
            self.model.objects.filter(session_key=session_key).delete()  # one DELETE


@shared_task
def sessions_clear_expired() -> None:
    """Beat job: delete the rows past their end (rotated keys after their grace, too)."""
    SessionStore.clear_expired()
