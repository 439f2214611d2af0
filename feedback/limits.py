"""How many submissions one client may make: a counter per client and window in the
shared Redis cache, counted in one round trip.

Only submissions that would be stored are counted (a form error costs
nothing and tells the person what to fix). The counter lives in Redis; when
Redis cannot be reached the limit lets the submission through (fails open):
storing a person's feedback matters more than throttling during an outage.

The rate is a count per period (FEEDBACK_RATE_LIMIT: "5/m", "100/h", "10/30s").
Windows are fixed, each client's shifted by a hash of its address, so they do
not all end at the same instant. One pipeline per submission (MULTI, SET NX
EX, INCR, EXEC): atomic, so a counter never lives without its expiry.
"""

import hashlib
import logging
import time
import zlib
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from django_redis import get_redis_connection
from redis.exceptions import RedisError

from web.client_address import request_client_address

logger = logging.getLogger(__name__)

GROUP = "feedback.submit"
PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class SubmissionLimit:
    exceeded: bool
    retry_after: int = 0  # seconds until the client's window ends


def rate_parse(rate: str) -> tuple[int, int]:
    """ "5/m" -> (5, 60), "10/30s" -> (10, 30): the count and its period in seconds.
    (settings.py has checked the syntax.)"""
    count, _, period = rate.partition("/")
    return int(count), int(period[:-1] or 1) * PERIODS[period[-1]]


def window_end(address: str, *, period: int, now: float) -> int:
    """When this client's current window ends (epoch seconds): windows of `period`
    seconds, shifted by a hash of the address."""
    shift = zlib.crc32(address.encode()) % period
    return int((now - shift) // period + 1) * period + shift


def submission_limit_take(request: HttpRequest) -> SubmissionLimit:
    """Count one submission for this client and say whether it is over the limit."""
    rate = settings.FEEDBACK_RATE_LIMIT
    if not rate:
        return SubmissionLimit(exceeded=False)
    limit, period = rate_parse(rate)
    address = request_client_address(request)  # as read in every deployment shape
    now = time.time()
    end = window_end(address, period=period, now=now)
    digest = hashlib.sha256(address.encode()).hexdigest()[:32]  # no address in Redis keys
    try:
        count = _count(f"rl:{GROUP}:{period}:{end}:{digest}", expires_in=end - int(now) + 1)
    except (RedisError, OSError):
        logger.warning("Submission limit not checked: the cache is unreachable", exc_info=True)
        return SubmissionLimit(exceeded=False)
    if count <= limit:
        return SubmissionLimit(exceeded=False)
    return SubmissionLimit(exceeded=True, retry_after=max(end - int(now), 1))


def _count(key: str, *, expires_in: int) -> int:
    """Add one to the counter (made with its expiry if new) and return it: one round trip."""
    key = cache.make_and_validate_key(key)
    with get_redis_connection().pipeline(transaction=True) as pipe:
        pipe.set(key, 0, ex=expires_in, nx=True)
        pipe.incr(key)
        _, count = pipe.execute()
    return count
