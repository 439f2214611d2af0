"""One Redis connection pool per process for Django's cache.

Django creates a cache client per thread, each with its own connection pool,
and daphne runs every HTTP request in a thread of its own: so every request
connected to Redis anew (the bench's profile of a submission showed the
connect). redis-py's pools are thread-safe and reset themselves after a fork,
so one pool per URL and options serves the whole process.
"""

import threading
from typing import Any

import redis


class SharedConnectionPool(redis.ConnectionPool):
    _shared: dict[tuple, "SharedConnectionPool"] = {}
    _lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> "SharedConnectionPool":
        key = (url, tuple(sorted((name, repr(value)) for name, value in kwargs.items())))
        with cls._lock:
            pool = cls._shared.get(key)
            if pool is None:
                pool = cls._shared[key] = super().from_url(url, **kwargs)
            return pool
