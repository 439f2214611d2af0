"""How many worker processes are consuming the queue, as the workers themselves say.

Each worker node announces its pool size every ANNOUNCE_EVERY seconds (a timer
in its main process, set up in tasks.py) into one Redis sorted set, scored by
when the announcement expires; a node that stops announcing (killed, stopped)
drops out after ANNOUNCE_TTL. The queue's estimates divide by this number.
"""

import logging
import time

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

ANNOUNCE_EVERY = 10.0
ANNOUNCE_TTL = 3 * ANNOUNCE_EVERY

_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=1.0, socket_connect_timeout=1.0
        )
    return _client


def _keys() -> tuple[str, str]:
    base = f"{settings.REDIS_PREFIX}:feedback:workers"
    return base, f"{base}:processes"


def workers_announce(*, node: str, processes: int) -> None:
    nodes, sizes = _keys()
    now = time.time()
    try:
        pipe = _redis().pipeline()
        pipe.zadd(nodes, {node: now + ANNOUNCE_TTL})
        pipe.hset(sizes, node, processes)
        pipe.zremrangebyscore(nodes, "-inf", now)  # the nodes that went silent...
        pipe.zrange(nodes, 0, -1)
        pipe.hkeys(sizes)
        *_, alive, known = pipe.execute()
        if gone := set(known) - set(alive):  # ...and their pool sizes
            _redis().hdel(sizes, *gone)
    except redis.RedisError:
        logger.warning("Could not announce worker %s", node, exc_info=True)


def workers_forget(*, node: str) -> None:
    nodes, sizes = _keys()
    try:
        _redis().zrem(nodes, node)
        _redis().hdel(sizes, node)
    except redis.RedisError:
        logger.warning("Could not forget worker %s", node, exc_info=True)


def workers_consuming() -> int | None:
    """Worker processes of the nodes that announced themselves lately; None if unknown."""
    nodes, sizes = _keys()
    try:
        # Read every status render of a queued feedback: one round trip, no
        # write (a silent node is left out by its score; an announce drops it).
        alive, every_size = (
            _redis()
            .pipeline(transaction=False)
            .zrangebyscore(nodes, time.time(), "+inf")
            .hgetall(sizes)
            .execute()
        )
        if not alive:
            return None
        return sum(int(every_size.get(node) or 0) for node in alive) or None
    except redis.RedisError:
        logger.warning("Could not read how many workers consume", exc_info=True)
        return None
