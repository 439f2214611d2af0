"""How many submissions one client may make: a fixed window per client in the shared Redis,
counted by the `limits` library through the app's one Redis client (django-redis).

Only submissions that would be stored are counted (a form error costs nothing and
tells the person what to fix). When Redis cannot be reached the limit lets the
submission through (fails open): storing a person's feedback matters more than
throttling during an outage.

The rate is a count per period (FEEDBACK_RATE_LIMIT: "5/m", "100/h", "10/30s"). A
client's window starts at its first counted submission, so windows do not all end at
the same instant; the count is one atomic script (INCR, and EXPIRE when new).
"""

import hashlib
import logging
import time
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.http import HttpRequest
from django_redis import get_redis_connection
from limits import RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import FixedWindowRateLimiter
from redis.exceptions import RedisError

from web.client_address import request_client_address

logger = logging.getLogger(__name__)

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class SubmissionLimit:
    exceeded: bool
    retry_after: int = 0  # seconds until the client's window ends


@cache
def rate_parse(rate: str) -> RateLimitItemPerSecond:
    """ "5/m" -> 5 per 60 seconds, "10/30s" -> 10 per 30 seconds (settings.py has checked
    the syntax; `limits.parse` reads "5/minute", not "5/m")."""
    count, _, period = rate.partition("/")
    seconds = int(period[:-1] or 1) * PERIODS[period[-1]]
    return RateLimitItemPerSecond(int(count), seconds, namespace="feedback.submit")


@cache
def submission_limiter(prefix: str) -> FixedWindowRateLimiter:
    """One limiter per process (and key prefix), on the process's one Redis pool.

    Made per request, it cost every submission a new cache client (Django keeps one
    per request context), a Redis client and the library's dependency checks.
    """
    storage = RedisStorage(
        "redis://",  # not dialled: the client comes from the pool given
        connection_pool=get_redis_connection().connection_pool,
        key_prefix=f"{prefix}:rl",
    )
    return FixedWindowRateLimiter(storage)


def submission_limit_take(request: HttpRequest) -> SubmissionLimit:
    """Count one submission for this client and say whether it is over the limit."""
    if not settings.FEEDBACK_RATE_LIMIT:
        return SubmissionLimit(exceeded=False)
    item = rate_parse(settings.FEEDBACK_RATE_LIMIT)
    address = request_client_address(request)  # as read in every deployment shape
    digest = hashlib.sha256(address.encode()).hexdigest()[:32]  # no address in Redis keys
    limiter = submission_limiter(settings.REDIS_PREFIX)
    try:
        if limiter.hit(item, digest):
            return SubmissionLimit(exceeded=False)
        reset_at = limiter.get_window_stats(item, digest).reset_time
    except (RedisError, OSError):
        logger.warning("Submission limit not checked: the cache is unreachable", exc_info=True)
        return SubmissionLimit(exceeded=False)
    return SubmissionLimit(exceeded=True, retry_after=max(round(reset_at - time.time()), 1))
