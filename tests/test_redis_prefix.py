"""Two stacks on one Redis keep to their own keys (django_celery/redis_prefix.py, REDIS_PREFIX).

A second checkout (another branch, a colleague's copy) pointed at the same Redis
must never run this one's tasks, push to its watchers, answer its health check
or count against its rate limit.
"""

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosedOK

from devtools.http_client import Visitor, status_of, statuses_until_final, watch_token
from devtools.smtp_sink import SmtpSink
from django_celery.redis_prefix import checkout_prefix
from feedback.models import Feedback

REPO_ROOT = Path(__file__).resolve().parents[1]
TASK_RECEIVED = re.compile(r"Task feedback\.tasks\.send_feedback_email\[[0-9a-f-]+\] received")


def test_each_checkout_has_its_own_prefix():
    here = checkout_prefix(Path("/home/ada/feedback"))
    assert here == checkout_prefix(Path("/home/ada/feedback"))
    assert here.startswith("feedback-feedback-")
    # Same directory name elsewhere (a colleague's copy): another prefix.
    assert checkout_prefix(Path("/home/bob/feedback")) != here
    assert checkout_prefix(Path("/work/Wt 17 (copy)")).startswith("feedback-wt-17-copy-")


def _settings(**env: str) -> subprocess.CompletedProcess:
    code = (
        "from django.conf import settings as s; "
        "print(s.REDIS_PREFIX); print(s.CELERY_BROKER_TRANSPORT_OPTIONS['global_keyprefix']); "
        "print(s.CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS['global_keyprefix']); "
        "print(s.CHANNEL_LAYERS['default']['CONFIG']['prefix']); "
        "print(s.CACHES['default']['KEY_PREFIX'])"
    )
    base = {key: value for key, value in os.environ.items() if not key.startswith("DJANGO_")}
    base.pop("REDIS_PREFIX", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", code],
        cwd=REPO_ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "django_celery.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result


def test_every_redis_user_takes_the_prefix():
    mine = checkout_prefix(REPO_ROOT)
    assert _settings().stdout.split() == [mine, f"{mine}:", f"{mine}:", f"{mine}:asgi:", mine]
    assert _settings(REDIS_PREFIX="shop").stdout.split()[0] == "shop"
    # In production every node must agree, wherever its code lives: one fixed name.
    production = {
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "x" * 50,
        "DJANGO_ALLOWED_HOSTS": "feedback.example.com",
    }
    assert _settings(**production).stdout.split()[0] == "feedback"
    refused = _settings(REDIS_PREFIX="a b*")
    assert refused.returncode != 0
    assert "REDIS_PREFIX='a b*': use letters, digits" in refused.stderr


@pytest.fixture
def other_stack(tmp_path, app_env):
    """What another checkout brings: its own database and mail server, its own prefix."""
    database = tmp_path / "other.sqlite3"
    env = {**app_env, "DATABASE_URL": f"sqlite:///{database}"}
    migrated = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "--verbosity", "0"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert migrated.returncode == 0, migrated.stderr
    with SmtpSink() as smtp:
        yield (
            {
                "DATABASE_URL": env["DATABASE_URL"],
                "EMAIL_PORT": str(smtp.port),
                "REDIS_PREFIX": f"test-b-{uuid.uuid4().hex[:8]}",
            },
            smtp,
        )


def _received_tasks(worker) -> int:
    return len(TASK_RECEIVED.findall(worker.log_text()))


def _frames(socket, *, timeout: float) -> list[str]:
    """What the socket sends until it closes, or until it is silent for ``timeout``."""
    frames = []
    try:
        while True:
            frames.append(socket.recv(timeout=timeout))
    except (TimeoutError, ConnectionClosedOK):
        return frames


def _statuses(frames: list[str]) -> list[str]:
    return [status_of(frame) for frame in frames if "data-status" in frame]


def test_two_stacks_on_one_redis_never_take_each_others_work(
    start_daphne, start_worker, smtp_server, other_stack, app_env, redis_url
):
    assert app_env["REDIS_URL"] == redis_url  # both stacks: the session's one Redis
    b_env, b_smtp = other_stack
    a_env = {"REDIS_PREFIX": f"test-a-{uuid.uuid4().hex[:8]}"}
    # One submission per hour per client, on both: their counters must not add up.
    daphne_a = start_daphne(**a_env, FEEDBACK_RATE_LIMIT="1/h")
    daphne_b = start_daphne(**b_env, FEEDBACK_RATE_LIMIT="1/h")

    # Only B has a worker. A's submission waits for its own.
    worker_b = start_worker(**b_env)
    with Visitor(daphne_a.url) as visitor_a, Visitor(daphne_b.url) as visitor_b:
        answer_a = visitor_a.submit(email="a@example.com", message="for stack A")
        assert answer_a.status_code == 200, answer_a.text
        assert status_of(answer_a.text) == "queued"
        with visitor_a.watch(watch_token(answer_a.text)) as socket_a:
            assert status_of(socket_a.recv(timeout=10)) == "queued"  # the current state first

            answer_b = visitor_b.submit(email="b@example.com", message="for stack B")
            assert answer_b.status_code == 200, answer_b.text  # not A's rate limit
            with visitor_b.watch(watch_token(answer_b.text)) as socket_b:
                assert statuses_until_final(socket_b)[-1] == "sent"
            [mail_b] = b_smtp.wait_for(1, timeout=30)
            assert mail_b.rcpt_tos == ["b@example.com"]

            # B's worker took B's task only; nothing of B's reached A's watcher.
            assert _received_tasks(worker_b) == 1
            meanwhile = _frames(socket_a, timeout=2)
            assert not [frame for frame in meanwhile if "for stack B" in frame]
            assert set(_statuses(meanwhile)) <= {"queued"}
            assert Feedback.objects.get().status == Feedback.Status.QUEUED
            assert smtp_server.messages == []
            # A's health check asks A's workers only: none, though B's runs.
            health_a = httpx.get(daphne_a.url + "/healthz", timeout=15)
            assert health_a.status_code == 503
            assert health_a.json()["checks"]["worker"]["ok"] is False
            # A's limit is still counted (A's own second submission is refused).
            assert visitor_a.submit(email="a@example.com", message="again").status_code == 429

            # A's worker starts and takes A's task, which waited in A's queue.
            worker_a = start_worker(**a_env)
            assert _statuses(_frames(socket_a, timeout=30))[-1] == "sent"
            assert all("for stack B" not in message.body for message in smtp_server.messages)

    [mail_a] = smtp_server.wait_for(1, timeout=30)
    assert mail_a.rcpt_tos == ["a@example.com"]
    assert Feedback.objects.get().status == Feedback.Status.SENT
    assert _received_tasks(worker_a) == 1
    assert _received_tasks(worker_b) == 1
    assert len(b_smtp.messages) == 1
