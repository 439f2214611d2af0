"""Fixtures for tests that run the app's real pieces: SMTP, Celery worker, daphne, a browser.

The session's Redis comes from ``tests/session_env.py`` (fixtures ``redis_url``
and ``redis_server``). Every process here listens on 127.0.0.1 only, waits a
bounded time to become ready, and is stopped at teardown, failed test or not.
A failing test's report shows the logs of the processes it started.
"""

import os
from pathlib import Path
from urllib.parse import quote

import pytest

from devtools.browser import CHROMIUM, CHROMIUM_ARGS
from devtools.processes import (
    HAPROXY,
    CeleryBeat,
    CeleryWorker,
    DaphneServer,
    HAProxy,
    Process,
)
from devtools.smtp_sink import SmtpSink
from tests.session_env import in_ci, require_binary
from tests.support.layer import close_all as close_all_listeners

# Small enough to keep tests quick, long enough to see the intermediate states.
TEST_SEND_DELAY = "0.3"

_process_logs = pytest.StashKey[list[tuple[str, Process]]]()
_reports = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    item.stash.setdefault(_reports, {})[report.when] = report
    if report.failed:
        for title, process in item.stash.get(_process_logs, []):
            report.sections.append((f"{title} ({process.log_path})", process.log_text()[-20_000:]))
    return report


def _show_log_on_failure(request: pytest.FixtureRequest, title: str, process: Process):
    request.node.stash.setdefault(_process_logs, []).append((title, process))


def _test_failed(request: pytest.FixtureRequest) -> bool:
    reports = request.node.stash.get(_reports, {})
    return any(report.failed for report in reports.values())


# Fixtures that start a browser or the app's processes: tests using them get the
# `browser` / `integration` marker, and both `slow` (make test-fast leaves them out).
BROWSER_FIXTURES = {"browser_page"}
INTEGRATION_FIXTURES = {
    "start_worker",
    "start_daphne",
    "start_beat",
    "start_haproxy",
    "beat",
    "smoke",
    "stack",
    "redis_server",
}


# Slow without those fixtures: hypothesis's hundreds of cases, and tests that run
# manage.py, `make run` or whole stacks as subprocesses.
SLOW_MODULES = {"test_fuzz"}
INTEGRATION_MODULES = {"test_redis_prefix", "test_admin_login", "test_bench_smoke"}
INTEGRATION_TESTS = {"test_run_stops_every_process_it_started"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        module = item.path.stem
        name = getattr(item, "originalname", item.name)
        kinds = []
        if fixtures & BROWSER_FIXTURES:
            kinds.append("browser")
        if (
            fixtures & INTEGRATION_FIXTURES
            or module in INTEGRATION_MODULES
            or name in INTEGRATION_TESTS
        ):
            kinds.append("integration")
        if module in SLOW_MODULES:
            item.add_marker("slow")
        for kind in kinds:
            item.add_marker(kind)
        if kinds:
            item.add_marker("slow")


@pytest.fixture(autouse=True)
def _close_layer_listeners():
    """A test's channel-layer listeners (tests/support/layer.py) end with it."""
    yield
    close_all_listeners()


@pytest.fixture(autouse=True)
def _no_language_left_active():
    """A request's language (LocaleMiddleware activates it, nothing deactivates it) ends
    with its test: a card read outside a request speaks LANGUAGE_CODE, as in a worker."""
    yield
    from django.utils import translation

    translation.deactivate()


# -- SMTP ----------------------------------------------------------------------


@pytest.fixture
def smtp_server():
    """A real SMTP server on 127.0.0.1: ``.host``, ``.port``, ``.messages``,
    ``.wait_for(count, timeout)``, ``.fail_next(n, code=451, text=..., stage="DATA")``."""
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def dev_mailbox(tmp_path):
    """The local SMTP server of `make run` (`manage.py mailbox`), storing mail in a file.

    Yields ``(env, path)``: ``env`` points the app's processes at it (pass it to
    ``start_worker`` / ``start_daphne``), ``path`` is the file the Outbox reads.
    """
    from devtools.ports import free_port
    from outbox.mailbox import serve

    path = tmp_path / "mailbox.jsonl"
    controller = serve(host="127.0.0.1", port=free_port(), path=path)
    env = {
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(controller.port),
        "DEV_MAILBOX": str(path),
        "DEV_MAILBOX_IN_USE": "1",
    }
    try:
        yield env, path
    finally:
        controller.stop()


@pytest.fixture
def postfix(request):
    """A private Postfix on a free port of 127.0.0.1 (tests/support/postfix.py), started.

    Skipped without Debian's `postfix` package (or not as root), failed instead
    under CI, REQUIRE_POSTFIX=1 or REQUIRE_BROWSER=1 (`.ci/run` installs it).
    """
    from tests.support.postfix import Postfix, missing_reason

    reason = missing_reason()
    if reason:
        if os.environ.get("REQUIRE_POSTFIX") == "1" or in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    server = Postfix()
    _show_log_on_failure(request, "postfix", server)
    try:
        yield server.start()
    finally:
        server.close()


# -- The app's processes ---------------------------------------------------------


def _database_url(settings_dict: dict) -> str:
    """A DATABASE_URL for the test database, for subprocesses (dj-database-url syntax)."""
    engine = settings_dict["ENGINE"].rsplit(".", 1)[-1]
    name = str(settings_dict["NAME"])
    if engine == "sqlite3":
        if name == ":memory:" or "mode=memory" in name:
            raise RuntimeError(
                "the test database is in memory: subprocesses cannot share it; "
                "set DATABASES['default']['TEST']['NAME'] to a file"
            )
        return f"sqlite:///{Path(name).resolve()}"
    scheme = {"postgresql": "postgres", "mysql": "mysql"}.get(engine, engine)
    user = quote(settings_dict.get("USER") or "", safe="")
    password = quote(settings_dict.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if user or password else ""
    host = settings_dict.get("HOST") or "localhost"
    port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
    return f"{scheme}://{auth}{host}{port}/{quote(name, safe='')}"


def _forget_earlier_tests(redis_url: str) -> None:
    """Delete this stack's keys in the session's Redis: the queue (an earlier test's
    tasks must never reach this test's worker), unacked messages, rate-limit counters."""
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        keys = [
            key
            for key in client.scan_iter(match=f"{settings.REDIS_PREFIX}*", count=1000)
            # Kept: kombu's exchange-to-queue bindings, declared once per process; a
            # publisher that finds them gone refuses to route (InconsistencyError).
            if b"_kombu.binding." not in key
        ]
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def app_env(transactional_db, smtp_server, redis_url) -> dict[str, str]:
    """Environment for the app's subprocesses: this session's Redis, the test
    database, the ``smtp_server`` fixture, a short FEEDBACK_SEND_DELAY.

    It brings ``transactional_db``: the subprocesses only see committed rows, and
    the tables are emptied after the test.
    """
    from django.db import connections

    database = connections["default"].settings_dict
    if "test" not in Path(str(database["NAME"])).name:
        # Never point a worker at the development database.
        raise RuntimeError(f"not a test database: {database['NAME']}")

    _forget_earlier_tests(redis_url)
    env = dict(os.environ)
    # Set by browser_page for this process only; the app's processes must not inherit it.
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    env.update(
        DJANGO_SETTINGS_MODULE=os.environ.get("DJANGO_SETTINGS_MODULE", "django_celery.settings"),
        REDIS_URL=redis_url,
        DATABASE_URL=_database_url(database),
        EMAIL_HOST=smtp_server.host,
        EMAIL_PORT=str(smtp_server.port),
        FEEDBACK_SEND_DELAY=TEST_SEND_DELAY,
        DJANGO_DEBUG="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def _starter(request, tmp_path, title: str, build):
    """A factory fixture's body: ``start(**kwargs)`` builds a process with
    ``build(number, log_path, **kwargs)``, starts it and attaches its log to a
    failing test's report; every process it started is stopped at teardown."""
    started: list[Process] = []

    def start(**kwargs) -> Process:
        number = len(started) + 1
        process = build(number, tmp_path / f"{title.split()[-1]}-{number}.log", **kwargs)
        started.append(process)
        _show_log_on_failure(request, f"{title} {number}", process)
        return process.start()

    yield start
    for process in reversed(started):
        process.stop()


def _with(app_env: dict[str, str], overrides: dict[str, object]) -> dict[str, str]:
    return {**app_env, **{key: str(value) for key, value in overrides.items()}}


@pytest.fixture
def start_worker(request, app_env, tmp_path):
    """Factory: ``start_worker(*, pool="prefork", concurrency=1, purge=False,
    extra_args=(), ready_timeout=30, **env_overrides) -> CeleryWorker``.

    Returns once the worker logged "ready". ``.proc``, ``.pid``, ``.pool_pids()``,
    ``.kill(sig)`` (main process), ``.kill_group(sig)``, ``.stop()``, ``.start()``,
    ``.log_text()``, ``.wait_for_log(regex)``. All are stopped at teardown.
    """

    def build(number, log_path, *, pool="prefork", concurrency=1, purge=False, extra_args=(),
              ready_timeout=30.0, **env) -> CeleryWorker:  # fmt: skip
        return CeleryWorker(
            env=_with(app_env, env), log_path=log_path, node_name=f"test{number}-{os.getpid()}@%h",
            pool=pool, concurrency=concurrency, purge=purge, extra_args=tuple(extra_args),
            ready_timeout=ready_timeout,
        )  # fmt: skip

    yield from _starter(request, tmp_path, "celery worker", build)


@pytest.fixture
def start_daphne(request, app_env, tmp_path):
    """Factory: ``start_daphne(*, port=None, ready_timeout=30, extra_args=(), **env_overrides)
    -> DaphneServer`` (``extra_args``: more of daphne's options, e.g. ``("--proxy-headers",)``).

    Returns once the port accepts connections. ``.url`` (http://127.0.0.1:PORT),
    ``.ws_url`` (ws://127.0.0.1:PORT), ``.port``, ``.stop()``, ``.start()`` (same port),
    ``.log_text()``. All are stopped at teardown.
    """

    def build(number, log_path, *, port=None, ready_timeout=30.0, extra_args=(), **env):
        return DaphneServer(env=_with(app_env, env), log_path=log_path, port=port,
                            ready_timeout=ready_timeout, extra_args=tuple(extra_args))  # fmt: skip

    yield from _starter(request, tmp_path, "daphne", build)


@pytest.fixture
def start_beat(request, app_env, tmp_path):
    """Factory: ``start_beat(**env_overrides) -> CeleryBeat`` (the sweeper's clock).

    Returns once beat started; stopped at teardown.
    """

    def build(number, log_path, **env) -> CeleryBeat:
        schedule = tmp_path / f"beat-{number}-schedule"
        return CeleryBeat(env=_with(app_env, env), log_path=log_path, schedule=schedule)

    yield from _starter(request, tmp_path, "celery beat", build)


@pytest.fixture
def start_haproxy(request, tmp_path):
    """Factory: ``start_haproxy(web=["127.0.0.1:PORT", ...]) -> HAProxy`` with
    ``deploy/haproxy.cfg``. Skipped without Debian's haproxy, failed under CI."""
    require_binary(HAPROXY, "apt-get install haproxy")

    def build(number, log_path, *, web: list[str]) -> HAProxy:
        return HAProxy(web=web, log_path=log_path)

    yield from _starter(request, tmp_path, "haproxy", build)


# -- Browser -------------------------------------------------------------------------


@pytest.fixture
def browser_context_options() -> dict:
    """Playwright's ``new_context`` options for ``browser_page``: an English browser in UTC,
    unless a test parametrizes it (``{"locale": "pt-BR", "timezone_id": "America/Recife"}``)."""
    return {"locale": "en-US", "timezone_id": "UTC"}


@pytest.fixture
def browser_page(request, monkeypatch, tmp_path, browser_context_options):
    """A Playwright (sync API) page in Debian's headless Chromium.

    Skipped when /usr/bin/chromium is missing, failed instead under CI or
    REQUIRE_BROWSER=1. A failing test leaves ``failure.png`` in its tmp_path.
    """
    require_binary(CHROMIUM, "apt-get install chromium")
    from playwright.sync_api import sync_playwright

    # The sync API keeps an event loop running in this thread; Django would
    # refuse ORM calls from the test body without this.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            context = browser.new_context(**browser_context_options)
            page = context.new_page()
            page.set_default_timeout(15_000)
            yield page
            if _test_failed(request):
                page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            context.close()
        finally:
            browser.close()
