"""The database settings: SQLite by default, PostgreSQL with Django's pool.

Settings are read once per process, so the settings cases run `manage.py` in
a subprocess with exactly the environment under test. The PostgreSQL cases
use the session's private server (make test's second pass).
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

REPO_ROOT = Path(__file__).resolve().parents[1]

SHOW_DATABASE = (
    "import json; from django.conf import settings as s; d = s.DATABASES['default']; "
    "print(json.dumps({'engine': d['ENGINE'], 'conn_max_age': d['CONN_MAX_AGE'], "
    "'pool': d.get('OPTIONS', {}).get('pool')}))"
)


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_", "DJANGO_ALLOW_ASYNC"))
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def database_settings(**env: str) -> dict:
    result = manage("shell", "--no-imports", "-c", SHOW_DATABASE, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# Settings only: nothing connects, so no server is needed for these.
POSTGRES_URL = "postgres://app:secret@db.example.com:5432/feedback"


def test_sqlite_is_the_default_without_a_pool():
    shown = database_settings()
    assert shown["engine"] == "django.db.backends.sqlite3"
    assert shown["pool"] is None


def test_postgresql_uses_django_s_pool_sized_by_the_environment():
    shown = database_settings(DATABASE_URL=POSTGRES_URL)
    assert shown == {
        "engine": "django.db.backends.postgresql",
        "conn_max_age": 0,  # the pool keeps the connections
        "pool": {"min_size": 1, "max_size": 10, "timeout": 10.0},
    }
    shown = database_settings(
        DATABASE_URL=POSTGRES_URL,
        DATABASE_POOL_MIN_SIZE="2",
        DATABASE_POOL_MAX_SIZE="20",
        DATABASE_POOL_TIMEOUT="3",
    )
    assert shown["pool"] == {"min_size": 2, "max_size": 20, "timeout": 3.0}


def test_the_pool_can_be_switched_off_for_persistent_connections():
    shown = database_settings(
        DATABASE_URL=POSTGRES_URL, DATABASE_POOL="0", DATABASE_CONN_MAX_AGE="60"
    )
    assert shown["pool"] is None
    assert shown["conn_max_age"] == 60


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"DATABASE_CONN_MAX_AGE": "60"}, "DATABASE_CONN_MAX_AGE must be 0 with the"),
        ({"DATABASE_POOL_MIN_SIZE": "5", "DATABASE_POOL_MAX_SIZE": "2"}, "need 0 <= min <= max"),
    ],
)
def test_settings_that_disagree_with_the_pool_are_refused_with_a_reason(env, says):
    result = manage("check", DATABASE_URL=POSTGRES_URL, **env)
    assert result.returncode != 0
    assert says in result.stderr


# -- On the session's private PostgreSQL server --------------------------------


@pytest.mark.postgres_only
def test_a_fresh_database_migrates_and_checks_clean(postgres_server):
    import psycopg

    with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS fresh_install")
        admin.execute("CREATE DATABASE fresh_install")
    url = postgres_server.url("fresh_install")
    try:
        migrate = manage("migrate", "--noinput", DATABASE_URL=url)
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        check = manage("check", "--database", "default", DATABASE_URL=url)
        assert check.returncode == 0, check.stdout + check.stderr
        assert "System check identified no issues" in check.stdout
    finally:
        with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
            admin.execute("DROP DATABASE IF EXISTS fresh_install WITH (FORCE)")


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_the_suite_s_own_connections_come_from_the_pool():
    assert connection.vendor == "postgresql"
    assert connection.settings_dict["NAME"].startswith("test_")
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert connection.pool is not None


@pytest.mark.postgres_only
def test_a_worker_keeps_its_pooled_connection_from_one_task_to_the_next(start_worker, smtp_server):
    """Celery's Django fixup closed the pool around every task: each email connected anew."""
    from feedback import services
    from feedback.models import Feedback

    def sessions_started() -> int:
        time.sleep(1.5)  # backends report their statistics at most once a second
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
            )
            return cursor.fetchone()[0]

    def send(count: int, sent_before: int) -> None:
        for number in range(count):
            services.feedback_create(email=f"pool{sent_before + number}@example.com", message="Hi")
        smtp_server.wait_for(sent_before + count, timeout=30)
        deadline = time.monotonic() + 10
        while Feedback.objects.filter(status="sent").count() < sent_before + count:
            assert time.monotonic() < deadline, "not all marked sent"
            time.sleep(0.05)

    start_worker(purge=True, FEEDBACK_SEND_DELAY="0")
    send(1, 0)  # the worker's first task opens its connection
    before = sessions_started()
    send(10, 1)
    opened = sessions_started() - before
    print(f"\nPostgreSQL sessions opened for 10 emails: {opened}")
    assert opened <= 1
