"""A private Redis for the whole test session, running before Django reads its settings.

Loaded with ``-p tests.redis_plugin`` (pyproject's addopts). Settings read
``REDIS_URL`` at import, and pytest-django imports them in its own
``pytest_load_initial_conftests``; a ``wrapper=True`` hookimpl runs before that
(and before every conftest), so the server is up and ``REDIS_URL`` points at it
by the time anything imports Django.

``TEST_REDIS_URL`` set: that server is used instead and nothing is started.
"""

import os

import pytest

from devtools.redis_server import RedisServer

_server: RedisServer | None = None


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config, parser, args):
    global _server
    external = os.environ.get("TEST_REDIS_URL", "").strip()
    if external:
        os.environ["REDIS_URL"] = external
    elif _server is None:
        _server = RedisServer().start()
        os.environ["REDIS_URL"] = _server.url
    return (yield)


def pytest_unconfigure(config):
    global _server
    if _server is not None:
        _server.close()
        _server = None


def pytest_report_header(config):
    if _server is not None:
        return f"redis: private {_server.url} ({_server.binary})"
    return f"redis: {os.environ.get('REDIS_URL')} (TEST_REDIS_URL)"


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
