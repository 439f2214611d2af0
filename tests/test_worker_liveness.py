"""Worker liveness (django_celery/worker_liveness.py) with real worker processes and Redis."""

import signal
import time

import pytest
import redis

from devtools.processes import wait_until
from django_celery import worker_liveness

# Fast beats, so the tests are quick: the key lives 1.5 s.
BEAT = {"WORKER_HEARTBEAT_SECONDS": "0.5"}


@pytest.fixture
def fast_beats(settings):
    settings.WORKER_HEARTBEAT_SECONDS = 0.5


def heartbeat(redis_url: str, hostname: str) -> tuple[bytes | None, int]:
    client = redis.Redis.from_url(redis_url)
    key = worker_liveness.heartbeat_key(hostname)
    return client.get(key), client.pttl(key)


def test_a_living_worker_beats_and_is_not_dead(start_worker, redis_url, fast_beats):
    worker = start_worker(**BEAT)
    name = worker.hostname
    wait_until(lambda: heartbeat(redis_url, name)[0], 10, "a heartbeat")
    _, ttl = heartbeat(redis_url, name)
    assert 0 < ttl <= 1500  # three beats
    time.sleep(2)  # longer than the key lives: it was written again meanwhile
    assert heartbeat(redis_url, name)[0] is not None
    assert worker_liveness.dead_workers([name]) == set()


def test_a_killed_node_is_dead_once_its_heartbeat_expired(start_worker, redis_url, fast_beats):
    worker = start_worker(**BEAT)
    name = worker.hostname
    wait_until(lambda: heartbeat(redis_url, name)[0], 10, "a heartbeat")
    worker.kill_group(signal.SIGKILL)
    worker.wait(10)
    killed_at = time.monotonic()
    wait_until(lambda: heartbeat(redis_url, name)[0] is None, 10, "the heartbeat gone")
    assert time.monotonic() - killed_at < 5
    assert worker_liveness.dead_workers([name, ""]) == {name}


def test_a_living_node_without_its_heartbeat_answers_the_ping(start_worker, redis_url, settings):
    # Beats far apart, so the key stays away once deleted (as after a Redis restart).
    settings.WORKER_HEARTBEAT_SECONDS = 60
    worker = start_worker(WORKER_HEARTBEAT_SECONDS="60")
    name = worker.hostname
    wait_until(lambda: heartbeat(redis_url, name)[0], 10, "a heartbeat")
    redis.Redis.from_url(redis_url).delete(worker_liveness.heartbeat_key(name))
    assert worker_liveness.dead_workers([name]) == set()


def test_a_clean_shutdown_removes_the_heartbeat_at_once(start_worker, redis_url, settings):
    settings.WORKER_HEARTBEAT_SECONDS = 60  # the key would otherwise live three minutes
    worker = start_worker(WORKER_HEARTBEAT_SECONDS="60")
    name = worker.hostname
    wait_until(lambda: heartbeat(redis_url, name)[0], 10, "a heartbeat")
    worker.stop()
    assert heartbeat(redis_url, name)[0] is None


def test_a_node_nobody_has_heard_of_is_dead(redis_url):
    assert worker_liveness.dead_workers(["never-started@nowhere"]) == {"never-started@nowhere"}
    assert worker_liveness.dead_workers([]) == set()


def life(redis_url: str, name: str) -> str | None:
    """The claimer string of the life beating for node `name` now."""
    beat = heartbeat(redis_url, name)[0]
    return f"{name}/{beat.decode()}" if beat else None


def test_a_node_restarted_under_the_same_name_ends_its_previous_life(
    start_worker, redis_url, fast_beats
):
    worker = start_worker(**BEAT)
    name = worker.hostname
    first = wait_until(lambda: life(redis_url, name), 10, "a heartbeat")
    assert worker_liveness.dead_workers([first]) == set()
    worker.kill_group(signal.SIGKILL)
    worker.wait(10)
    worker.start()  # the same command line: the same node name, at once
    assert worker.hostname == name
    second = wait_until(
        lambda: (now := life(redis_url, name)) != first and now, 10, "the new life beating"
    )
    # What the first life claimed is taken back at once; the new life keeps its own.
    assert worker_liveness.dead_workers([first, second]) == {first}
