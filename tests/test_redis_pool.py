"""Django's cache on Redis: one client and one connection pool per process, whatever the thread.

daphne runs each request in a thread of its own, and Django makes a cache
object per thread: each built a client (which reads redis-py's version from
its installed metadata) and a pool (which connected anew).
"""

import threading

from django.core.cache import caches


def test_every_thread_uses_the_process_s_one_cache_client_and_pool():
    seen = []

    def one_request() -> None:
        cache = caches["default"]
        cache.set("redis-pool-test", 1, timeout=5)
        seen.append((cache, cache._cache, cache._cache.get_client().connection_pool))

    threads = [threading.Thread(target=one_request) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    caches_seen, clients, pools = zip(*seen, strict=True)
    assert len({id(cache) for cache in caches_seen}) == 4  # Django's: one per thread
    assert len({id(client) for client in clients}) == 1
    assert len({id(pool) for pool in pools}) == 1
