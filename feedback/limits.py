"""How many submissions one client may make: a counter per client and window in the
shared Redis cache, counted in one round trip.

Only submissions that would be stored are counted (a form error costs
nothing and tells the person what to fix). The counter lives in Redis; when
Redis cannot be reached the limit lets the submission through (fails open):
storing a person's feedback matters more than throttling during an outage.

The rate's syntax, the windows (fixed, each client's shifted by a hash of its
address so they do not all end at once) and the counter's key are
django-ratelimit's (pinned in requirements.txt): counters in flight keep
counting across an upgrade. Its `get_usage` took up to three round trips per
submission (SET NX, then EXISTS and INCR); here one pipeline, MULTI SET NX EX,
INCR, EXEC: atomic, so a counter never outlives its window without an expiry.
"""

import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches
from django.http import HttpRequest
from django_ratelimit.core import EXPIRATION_FUDGE, _get_window, _make_cache_key, _split_rate
from redis.exceptions import RedisError

from django_celery.client_address import request_client_address

logger = logging.getLogger(__name__)

GROUP = "feedback.submit"


@dataclass(frozen=True)
class SubmissionLimit:
    exceeded: bool
    retry_after: int = 0  # seconds until the client's window ends


def client_key(group: str, request: HttpRequest) -> str:
    # The address as read in every deployment shape (proxy hops, unix socket).
    return request_client_address(request)


def submission_limit_take(request: HttpRequest) -> SubmissionLimit:
    """Count one submission for this client and say whether it is over the limit."""
    rate = settings.FEEDBACK_RATE_LIMIT
    if not rate:
        return SubmissionLimit(exceeded=False)
    limit, period = _split_rate(rate)
    address = client_key(GROUP, request)
    window = _get_window(address, period)
    try:
        count = _count(_make_cache_key(GROUP, window, rate, address, "POST"), period)
    except (RedisError, OSError):
        logger.warning("Submission limit not checked: the cache is unreachable", exc_info=True)
        return SubmissionLimit(exceeded=False)
    if count <= limit:
        return SubmissionLimit(exceeded=False)
    return SubmissionLimit(exceeded=True, retry_after=max(window - int(time.time()), 1))


def _count(key: str, period: int) -> int:
    """Add one to the counter (made with its expiry if new) and return it: one round trip."""
    cache = caches["default"]
    key = cache.make_and_validate_key(key)
    client = cache._cache.get_client(key, write=True)
    with client.pipeline(transaction=True) as pipe:
        pipe.set(key, 0, ex=period + EXPIRATION_FUDGE, nx=True)
        pipe.incr(key)
        _, count = pipe.execute()
    return count
