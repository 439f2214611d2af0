"""Which Celery worker nodes are alive: so the work of a dead one is taken back in seconds.

Each worker node's main process writes a key in Redis (under REDIS_PREFIX) every
WORKER_HEARTBEAT_SECONDS; the key expires after three missed beats. The main
process is not the one that runs tasks (the pool's processes are), so a node
busy with slow sends keeps beating. A node is taken as dead only when its key
is gone *and* it does not answer a ping (Celery's remote control, also
answered by the main process): a Redis that restarted and lost the keys, or a
heartbeat late on a busy machine, never makes a living node look dead.

A clean shutdown removes the key after the pool has finished (or was stopped),
so what the node left unfinished is taken back at once.
"""

import contextlib
import logging
import threading
from collections.abc import Iterable

import redis
from celery import signals
from django.conf import settings

logger = logging.getLogger(__name__)

PING_TIMEOUT = 1.0


def heartbeat_key(hostname: str) -> str:
    return f"{settings.REDIS_PREFIX}:worker-alive:{hostname}"


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


def heartbeat_ttl() -> float:
    """Seconds a heartbeat stays: three beats."""
    return 3 * settings.WORKER_HEARTBEAT_SECONDS


class Heartbeat(threading.Thread):
    """Writes this node's key now and every WORKER_HEARTBEAT_SECONDS until stopped."""

    def __init__(self, hostname: str) -> None:
        super().__init__(name=f"heartbeat {hostname}", daemon=True)
        self.hostname = hostname
        self.client = _redis()
        self._stopped = threading.Event()

    def beat(self) -> None:
        try:
            self.client.set(heartbeat_key(self.hostname), "1", px=int(heartbeat_ttl() * 1000))
        except redis.RedisError as error:
            # Redis is away: the node is asked by ping meanwhile, and beats again once it is back.
            logger.warning("worker heartbeat not written: %s", error)

    def run(self) -> None:
        while True:
            self.beat()
            if self._stopped.wait(settings.WORKER_HEARTBEAT_SECONDS):
                return

    def stop(self) -> None:
        self._stopped.set()
        self.join(5)
        with contextlib.suppress(redis.RedisError):  # if not, it expires by itself
            self.client.delete(heartbeat_key(self.hostname))


_heartbeat: Heartbeat | None = None


@signals.worker_ready.connect
def _start_heartbeat(sender, **kwargs) -> None:
    global _heartbeat
    if _heartbeat is None:
        _heartbeat = Heartbeat(sender.hostname)
        _heartbeat.start()


@signals.worker_shutdown.connect
def _stop_heartbeat(sender, **kwargs) -> None:
    global _heartbeat
    if _heartbeat is not None:
        _heartbeat.stop()
        _heartbeat = None


def dead_workers(hostnames: Iterable[str]) -> set[str]:
    """Those of `hostnames` with no heartbeat that do not answer a ping either.

    When Redis cannot be asked, nobody is taken as dead: the lease still
    bounds how long a row can wait.
    """
    candidates = sorted({name for name in hostnames if name})
    if not candidates:
        return set()
    try:
        beats = _redis().mget([heartbeat_key(name) for name in candidates])
    except redis.RedisError:
        logger.warning("worker liveness: Redis does not answer", exc_info=True)
        return set()
    silent = [name for name, beat in zip(candidates, beats, strict=True) if beat is None]
    if not silent:
        return set()
    from django_celery.celery import app

    try:
        # A connection of its own, not one from the pool: a pooled connection may
        # be a dead one left from before a Redis restart, which the ping would
        # find only by failing.
        with app.connection_for_write() as connection:
            replies = app.control.ping(
                destination=silent, timeout=PING_TIMEOUT, connection=connection
            )
    except Exception:
        logger.warning("worker liveness: could not ping %s", silent, exc_info=True)
        return set()
    answered = {name for reply in replies for name in reply}
    return set(silent) - answered
