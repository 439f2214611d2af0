"""Sessions: Django's database store; the key changes once, when the session gets its
watcher key (feedback/tokens.py), and rows past their end are deleted by a beat job."""

import datetime
import os
import subprocess
import sys
import uuid

import pytest
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.utils import timezone

from feedback.tokens import feedback_id_from_token, feedback_token
from web.tasks import sessions_clear_expired

pytestmark = [pytest.mark.django_db, pytest.mark.engines]  # datetime comparisons in SQL


def test_the_key_changes_with_the_watcher_key_and_only_then():
    planted = SessionStore()
    planted["planted"] = True
    planted.create()
    session = SessionStore(planted.session_key)
    first = feedback_token(uuid.uuid4(), session=session)
    session.save()
    rotated = session.session_key
    assert rotated != planted.session_key
    assert not Session.objects.filter(session_key=planted.session_key).exists()
    assert session["planted"] is True  # the data moves with it
    again = SessionStore(rotated)
    second = feedback_token(uuid.uuid4(), session=again)
    again.save()
    assert again.session_key == rotated  # no second rotation, no extra writes
    for token in (first, second):
        assert feedback_id_from_token(token, session=SessionStore(rotated)) is not None
    assert feedback_id_from_token(first, session=SessionStore(planted.session_key)) is None


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
