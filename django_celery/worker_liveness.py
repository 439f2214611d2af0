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

Node names are usually stable (``-n worker@%h``), so a node that crashed and
was restarted at once beats again under the same name. Each start of a node
is therefore a *life* with an id of its own: the heartbeat holds it, and a
claim names the life that made it (``claimer()``). A claim whose life is not
the one beating now belongs to a dead life, and is taken back at once too.
"""

import contextlib
import logging
import os
import secrets
import threading
from collections.abc import Iterable

import redis
from celery import signals
from django.conf import settings

logger = logging.getLogger(__name__)

PING_TIMEOUT = 1.0
# The id of this node's life, set in its main process before the pool starts,
# so the pool's processes (where tasks run and claim) inherit it.
LIFE_ENV = "CELERY_WORKER_LIFE"


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
            self.client.set(
                heartbeat_key(self.hostname), this_life(), px=int(heartbeat_ttl() * 1000)
            )
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


def this_life() -> str:
    return os.environ.get(LIFE_ENV, "")


def claimer(hostname: str) -> str:
    """How a claim names the worker node making it: ``hostname/life``."""
    return f"{hostname}/{this_life()}"


def node_of(claimer: str) -> str:
    """The node name in a ``claimer()`` string."""
    return claimer.rpartition("/")[0] if "/" in claimer else claimer


def life_of(claimer: str) -> str:
    return claimer.rpartition("/")[2]


@signals.worker_init.connect
def _begin_life(sender, **kwargs) -> None:
    os.environ[LIFE_ENV] = secrets.token_hex(6)


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


def dead_workers(claimers: Iterable[str]) -> set[str]:
    """Those of `claimers` (``claimer()`` strings, or bare node names) whose life is over.

    Over: another life of the node beats now (it was restarted), or nothing
    beats and the node does not answer a ping either. When Redis cannot be
    asked, nobody is taken as dead: the lease still bounds how long a row can wait.
    """
    candidates = sorted({name for name in claimers if name})
    if not candidates:
        return set()
    nodes = sorted({node_of(name) for name in candidates})
    try:
        values = _redis().mget([heartbeat_key(node) for node in nodes])
    except redis.RedisError:
        logger.warning("worker liveness: Redis does not answer", exc_info=True)
        return set()
    beating = {node: value.decode() for node, value in zip(nodes, values, strict=True) if value}
    # Another life of the node beats: it was restarted, and the claim's life is over.
    dead = {
        name
        for name in candidates
        if "/" in name and beating.get(node_of(name), life_of(name)) != life_of(name)
    }
    silent = [node for node in nodes if node not in beating]
    if not silent:
        return dead
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
        return dead
    answered = {node for reply in replies for node in reply}
    return dead | {name for name in candidates if node_of(name) in set(silent) - answered}
