"""One Redis client and connection pool per process for Django's cache.

Django creates a cache object per thread, each with its own client and
connection pool, and daphne runs every HTTP request in a thread of its own:
so every request connected to Redis anew (the bench's profile of a
submission showed the connect), and built a client anew, which asks
importlib.metadata for redis-py's version (a file read and parse, ~0.5 ms of
CPU per request). redis-py's pools are thread-safe and reset themselves after
a fork, and Django's client keeps no per-request state, so one of each per
URL and options serves the whole process.
"""

import threading
from typing import Any

import redis
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.utils.functional import cached_property

_lock = threading.RLock()


def _key(*parts: Any, options: dict[str, Any]) -> tuple:
    return (*parts, tuple(sorted((name, repr(value)) for name, value in options.items())))


class SharedConnectionPool(redis.ConnectionPool):
    _shared: dict[tuple, "SharedConnectionPool"] = {}

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> "SharedConnectionPool":
        key = _key(url, options=kwargs)
        with _lock:
            pool = cls._shared.get(key)
            if pool is None:
                pool = cls._shared[key] = super().from_url(url, **kwargs)
            return pool


class SharedClientRedisCache(RedisCache):
    """Django's Redis cache backend, its client built once per process (not per thread)."""

    _clients: dict[tuple, RedisCacheClient] = {}

    @cached_property
    def _cache(self) -> RedisCacheClient:
        key = _key(self._class, *self._servers, options=self._options)
        with _lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = self._class(self._servers, **self._options)
            return client

    def redis_client(self, key: str) -> redis.Redis:
        """The redis-py client that writes `key` (made by make_and_validate_key), for
        what the cache API lacks: a pipeline (feedback/limits.py)."""
        return self._cache.get_client(key, write=True)
