"""Sessions: a new key on every submission, written once; the old key loads as it was for a
short grace, then is absent (django_celery/sessions.py)."""

import datetime
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_celery.sessions import SessionStore, grace, sessions_clear_expired

pytestmark = [pytest.mark.django_db, pytest.mark.engines]  # datetime comparisons in SQL


def statements(queries) -> list[str]:
    """The SQL verbs run, without the savepoints of the test's transaction."""
    verbs = [query["sql"].split()[0].upper() for query in queries]
    return [verb for verb in verbs if verb not in {"SAVEPOINT", "RELEASE"}]


def saved_key(**data) -> str:
    """The key of a new session row holding `data`."""
    session = SessionStore()
    session.update(data)
    session.save()
    return session.session_key


def test_a_new_key_keeps_the_data_keeps_the_old_row_briefly_and_writes_the_new_one_once():
    old_key = saved_key(**{"feedback.watcher": "key"})

    session = SessionStore(old_key)
    assert session["feedback.watcher"] == "key"  # loaded (one SELECT, not counted below)
    with CaptureQueriesContext(connection) as cycled:
        session.cycle_key()
        session["feedback.submitted"] = ["abc"]
        session.save()  # what the session middleware does at the end of the request
    # The old row's end moved (Django's: 5 statements, the old row deleted).
    assert statements(cycled.captured_queries) == ["UPDATE", "INSERT"]

    assert session.session_key and session.session_key != old_key
    again = SessionStore(session.session_key)
    assert again["feedback.watcher"] == "key" and again["feedback.submitted"] == ["abc"]
    assert again.get_expiry_age() > 3600  # the new row has a whole session's life
    # The old key, within the grace: as it was before the cycle, never what came after.
    old = SessionStore(old_key)
    assert old["feedback.watcher"] == "key" and "feedback.submitted" not in old
    assert old_key_row(old_key).expire_date <= timezone.now() + grace()


def old_key_row(key: str) -> Session:
    return Session.objects.get(session_key=key)


def test_after_the_grace_the_old_key_is_absent():
    old_key = saved_key(**{"feedback.watcher": "key"})
    session = SessionStore(old_key)
    session.cycle_key()
    session.save()
    Session.objects.filter(session_key=old_key).update(expire_date=timezone.now())  # the clock
    stale = SessionStore(old_key)
    assert stale.get("feedback.watcher") is None  # Django's load: expire_date > now
    assert stale.session_key is None  # forgotten: the page socket's 4401
    SessionStore.clear_expired()
    assert not Session.objects.filter(session_key=old_key).exists()
    assert Session.objects.filter(session_key=session.session_key).exists()


def test_a_grace_of_zero_deletes_the_old_row_at_once(settings):
    settings.SESSION_ROTATED_GRACE_SECONDS = 0
    old_key = saved_key()
    session = SessionStore(old_key)
    session.keys()  # loaded (one SELECT, not counted below)
    with CaptureQueriesContext(connection) as cycled:
        session.cycle_key()
        session.save()
    assert statements(cycled.captured_queries) == ["DELETE", "INSERT"]
    assert not Session.objects.filter(session_key=old_key).exists()


def test_the_old_key_cycled_again_keeps_its_first_end_and_gives_each_request_its_own_key():
    """Two tabs submit with the same key: each gets a key of its own, both with the data the
    key held; the old row's end never moves later, whatever is done with it."""
    old_key = saved_key(**{"feedback.watcher": "key"})
    tab_a, tab_b = SessionStore(old_key), SessionStore(old_key)
    tab_a.keys(), tab_b.keys()  # both loaded before either cycles
    tab_a.cycle_key()
    tab_a["feedback.submitted"] = ["a"]
    tab_a.save()
    end = old_key_row(old_key).expire_date

    tab_b.cycle_key()
    tab_b["feedback.submitted"] = ["b"]
    tab_b.save()
    assert old_key_row(old_key).expire_date == end
    assert len({old_key, tab_a.session_key, tab_b.session_key}) == 3
    assert SessionStore(tab_a.session_key)["feedback.submitted"] == ["a"]
    assert SessionStore(tab_b.session_key)["feedback.submitted"] == ["b"]
    assert SessionStore(tab_b.session_key)["feedback.watcher"] == "key"

    # Changed without a cycle (any request that writes the session): a new key as well,
    # so the old row is never given back a whole session's life, nor new data.
    late = SessionStore(old_key)
    late["something"] = "new"
    with CaptureQueriesContext(connection) as saved:
        late.save()
    assert statements(saved.captured_queries) == ["INSERT"]  # not more than the UPDATE
    assert late.session_key not in {old_key, None}
    assert old_key_row(old_key).expire_date == end
    assert "something" not in SessionStore(old_key)


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


def test_the_beat_job_deletes_the_rows_past_their_end():
    live, ended = SessionStore(), SessionStore()
    live.save(), ended.save()
    Session.objects.filter(session_key=ended.session_key).update(
        expire_date=timezone.now() - datetime.timedelta(seconds=1)
    )
    sessions_clear_expired()  # its body, in process
    assert set(Session.objects.values_list("session_key", flat=True)) == {live.session_key}


# A fresh process (this one imported the module already): what a worker registers.
WORKER_TASKS = """
import django; django.setup()
from django.conf import settings
from django_celery.celery import app
app.loader.import_default_modules()
print(*[entry["task"] in app.tasks for entry in settings.CELERY_BEAT_SCHEDULE.values()])
"""


def test_a_worker_knows_every_task_beat_sends():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "django_celery.settings"}
    done = subprocess.run(
        [sys.executable, "-c", WORKER_TASKS], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True"] * len(settings.CELERY_BEAT_SCHEDULE)
