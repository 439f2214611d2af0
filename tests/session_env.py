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
  development database.
"""

import os
import shutil
import tempfile

import pytest

from devtools.redis_server import RedisServer

_server: RedisServer | None = None
_database_dir: str | None = None


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config, parser, args):
    global _server, _database_dir
    external = os.environ.get("TEST_REDIS_URL", "").strip()
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
    if not os.environ.get("DATABASE_URL") and _database_dir is None:
        _database_dir = tempfile.mkdtemp(prefix="feedback-tests-")
        os.environ["DATABASE_URL"] = f"sqlite:///{_database_dir}/db.sqlite3"
    return (yield)


def pytest_unconfigure(config):
    global _server, _database_dir
    if _server is not None:
        _server.close()
        _server = None
    if _database_dir is not None:
        shutil.rmtree(_database_dir, ignore_errors=True)
        _database_dir = None


def pytest_report_header(config):
    if _server is not None:
        redis = f"redis: private {_server.url} ({_server.binary})"
    else:
        redis = f"redis: {os.environ.get('REDIS_URL')} (TEST_REDIS_URL)"
    return [redis, f"database: {os.environ.get('DATABASE_URL')}"]


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
