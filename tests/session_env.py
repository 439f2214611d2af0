"""The test session's own services, in place before Django reads its settings.

Loaded with ``-p tests.session_env`` (pyproject's addopts). Settings read
``REDIS_URL`` and ``DATABASE_URL`` at import, and pytest-django imports them in
its own ``pytest_load_initial_conftests``; a ``wrapper=True`` hookimpl runs
before that (and before every conftest), so by then:

- ``REDIS_URL`` points at a private redis-server started for this session
  (``TEST_REDIS_URL`` set: that server instead, nothing started);
- ``FEEDBACK_RATE_LIMIT`` is off and the status sockets' caps are out of reach:
  the whole suite is one client (127.0.0.1), so the limits are switched on
  only by the tests that test them;
- ``FEEDBACK_UNDO_SECONDS`` is 0: no test waits out an undo window before its
  email goes, unless it tests Undo (tests/test_undo.py sets one);
- ``DATABASE_URL``, unless already set, names a SQLite file in a temp dir of
  this session, so the test database (a file, shared with the worker and
  daphne subprocesses) never collides with another session's or touches the
  development database;
- with ``TEST_DATABASE=postgres`` it names a private PostgreSQL server started
  for this session instead (devtools.processes; never a server already
  running on the machine), and only the tests marked ``engines`` (their
  behaviour may differ between databases) or ``postgres_only`` run: the
  second pass of ``make test``. Without it, ``postgres_only`` tests skip.

A SIGTERM interrupts the session as Ctrl-C does, so teardowns run and the
servers stop (a SIGKILL reaches them too: see devtools/processes.py).
"""

import os
import shutil
import signal
import tempfile

import pytest

from devtools.processes import PostgresServer, RedisServer

_server: RedisServer | None = None
_postgres: PostgresServer | None = None
_database_dir: str | None = None


def _wants_postgres() -> bool:
    database = os.environ.get("TEST_DATABASE", "").strip().lower()
    if database not in ("", "sqlite", "postgres"):
        raise pytest.UsageError(f"TEST_DATABASE={database!r}: use sqlite or postgres")
    return database == "postgres"


def in_ci() -> bool:
    """Under CI (or REQUIRE_BROWSER=1) what .ci/run installs must be there."""
    ci = os.environ.get("CI", "").strip().lower()
    return os.environ.get("REQUIRE_BROWSER") == "1" or ci not in ("", "0", "false", "no")


def require_binary(path: str, install: str) -> None:
    """Skip when a binary from a Debian package is missing; fail instead under CI."""
    if not os.path.exists(path):
        message = f"{path} is missing ({install})"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config, parser, args):
    global _server, _postgres, _database_dir
    external = os.environ.get("TEST_REDIS_URL", "").strip()
    if external and in_ci():
        # The Redis-down tests need the private server and would be skipped: CI must not
        # pass with them unrun (nor share rate-limit counters with an earlier run).
        raise pytest.UsageError(
            "TEST_REDIS_URL is refused under CI / REQUIRE_BROWSER=1: the suite starts its own Redis"
        )
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if external:
        os.environ["REDIS_URL"] = external
    elif _server is None:
        _server = RedisServer().start()
        os.environ["REDIS_URL"] = _server.url
    os.environ["FEEDBACK_RATE_LIMIT"] = "off"
    os.environ["FEEDBACK_UNDO_SECONDS"] = "0"
    # The same for the status sockets' caps and connect rate (tests/test_hostile_clients.py
    # sets them for the tests that test them).
    os.environ["REALTIME_MAX_SOCKETS_PER_SESSION"] = "100000"
    os.environ["REALTIME_MAX_SOCKETS_PER_CLIENT"] = "100000"
    os.environ["REALTIME_CONNECTS_PER_SECOND"] = "100000"
    if _wants_postgres():
        if _postgres is None:
            _postgres = PostgresServer().start()
        os.environ["DATABASE_URL"] = _postgres.url("feedback")
    elif not os.environ.get("DATABASE_URL") and _database_dir is None:
        _database_dir = tempfile.mkdtemp(prefix="feedback-tests-")
        os.environ["DATABASE_URL"] = f"sqlite:///{_database_dir}/db.sqlite3"
    return (yield)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "engines: behaviour that may differ between databases; also runs on PostgreSQL"
    )
    config.addinivalue_line("markers", "postgres_only: runs only on PostgreSQL")


def pytest_collection_modifyitems(config, items):
    if _postgres is not None:
        selected = [item for item in items if _runs_on_postgres(item)]
        if len(selected) < len(items):
            deselected = [item for item in items if not _runs_on_postgres(item)]
            config.hook.pytest_deselected(items=deselected)
            items[:] = selected
        return
    skip = pytest.mark.skip(reason="PostgreSQL only: make test runs it (TEST_DATABASE=postgres)")
    for item in items:
        if item.get_closest_marker("postgres_only"):
            item.add_marker(skip)


def _runs_on_postgres(item: pytest.Item) -> bool:
    return bool(item.get_closest_marker("engines") or item.get_closest_marker("postgres_only"))


def pytest_unconfigure(config):
    global _server, _postgres, _database_dir
    if _server is not None:
        _server.close()
        _server = None
    if _postgres is not None:
        _postgres.close()
        _postgres = None
    if _database_dir is not None:
        shutil.rmtree(_database_dir, ignore_errors=True)
        _database_dir = None


def pytest_report_header(config):
    if _server is not None:
        redis = f"redis: private {_server.url} ({_server.binary})"
    else:
        redis = f"redis: {os.environ.get('REDIS_URL')} (TEST_REDIS_URL)"
    if _postgres is not None:
        database = f"database: PostgreSQL, private {_postgres.url()} ({_postgres.version()})"
    else:
        url = os.environ.get("DATABASE_URL", "")
        engine = "SQLite" if url.startswith("sqlite") else "from DATABASE_URL"
        database = f"database: {engine}, {url}"
    return [redis, database]


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ["REDIS_URL"]


@pytest.fixture
def redis_server() -> RedisServer:
    """The session's private Redis, for tests that stop and start it.

    Whatever a test does to it, it is running again when the test ends.
    """
    if _server is None:
        pytest.skip("TEST_REDIS_URL points at an external Redis; this test needs the private one")
    yield _server
    _server.start()


@pytest.fixture(scope="session")
def postgres_server() -> PostgresServer:
    """The session's private PostgreSQL server (only in the PostgreSQL pass)."""
    if _postgres is None:
        pytest.skip("needs TEST_DATABASE=postgres (make test's second pass)")
    return _postgres
