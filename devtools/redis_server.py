"""The bench's old import path: the private Redis lives in ``devtools.processes``."""

from devtools.processes import RedisServer, RedisServerError, find_redis_server, ping

__all__ = ["RedisServer", "RedisServerError", "find_redis_server", "ping"]
