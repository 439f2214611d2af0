"""The database settings: SQLite by default, PostgreSQL with Django's pool.

Settings are read once per process, so the settings cases run `manage.py` in
a subprocess with exactly the environment under test. The PostgreSQL cases
use the session's private server (make test's second pass).
"""

import json
import os
import subprocess
import sys
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
