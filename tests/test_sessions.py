"""Sessions: a new key on every submission, written once (django_celery/sessions.py)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_celery.sessions import SessionStore

pytestmark = pytest.mark.django_db


def statements(queries) -> list[str]:
    """The SQL verbs run, without the savepoints of the test's transaction."""
    verbs = [query["sql"].split()[0].upper() for query in queries]
    return [verb for verb in verbs if verb not in {"SAVEPOINT", "RELEASE"}]


def test_a_new_key_keeps_the_data_drops_the_old_row_and_writes_the_new_one_once():
    planted = SessionStore()
    planted["feedback.watcher"] = "key"
    planted.save()
    old_key = planted.session_key

    session = SessionStore(old_key)
    assert session["feedback.watcher"] == "key"  # loaded (one SELECT, not counted below)
    with CaptureQueriesContext(connection) as cycled:
        session.cycle_key()
        session["feedback.submitted"] = ["abc"]
        session.save()  # what the session middleware does at the end of the request
    assert statements(cycled.captured_queries) == ["DELETE", "INSERT"]  # Django's: 5 statements

    assert session.session_key and session.session_key != old_key
    assert not SessionStore().exists(old_key)
    again = SessionStore(session.session_key)
    assert again["feedback.watcher"] == "key" and again["feedback.submitted"] == ["abc"]
    assert SessionStore(old_key).get("feedback.watcher") is None  # the planted key sees nothing


def test_a_taken_key_is_never_overwritten(monkeypatch):
    """No SELECT before the INSERT: a key already taken fails the INSERT, and another is drawn."""
    first = SessionStore()
    first["owner"] = "first"
    first.save()
    keys = iter([first.session_key, "b" * 32])
    monkeypatch.setattr(SessionStore, "_get_new_session_key", lambda self: next(keys))
    second = SessionStore()
    second["owner"] = "second"
    second.save()
    assert second.session_key == "b" * 32
    assert SessionStore(first.session_key)["owner"] == "first"
