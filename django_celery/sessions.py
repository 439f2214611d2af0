"""Django's database sessions, with fewer statements when the key changes.

Each submission gives the session a new key (feedback.views: watch rights go to
this session, a planted key loses them). Django's `cycle_key` writes the new
row at once (a SELECT to check the random key is free, an INSERT), deletes
the old one (a SELECT, a DELETE), and the session middleware then saves the
new one again at the end of the request (an UPDATE). Here the old row goes
in one DELETE, as before at once, and the new row is written once, by that
save: an INSERT, which fails on the (unlikely) taken key and is then tried
with another, as Django's own `create` does.
"""

from django.contrib.sessions.backends.base import VALID_KEY_CHARS
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.utils.crypto import get_random_string


class SessionStore(DatabaseSessionStore):
    def cycle_key(self) -> None:
        data = self._session
        key = self.session_key
        self._session_key = None  # the save at the end of the request creates the new row
        self._session_cache = data
        self.modified = True
        if key:
            self.delete(key)

    def _get_new_session_key(self) -> str:
        # No SELECT first: create() inserts with must_create, and a taken key
        # raises CreateError there, which makes it try another.
        return get_random_string(32, VALID_KEY_CHARS)

    def delete(self, session_key: str | None = None) -> None:
        if session_key is None:
            session_key = self.session_key
        if session_key is not None:
            self.model.objects.filter(session_key=session_key).delete()  # one DELETE
