"""How many submissions one client may make: django-ratelimit over the shared Redis cache.

Only submissions that would be stored are counted (a form error costs
nothing and tells the person what to fix). The counter lives in Redis; when
Redis cannot be reached the limit lets the submission through (fails open):
storing a person's feedback matters more than throttling during an outage.
"""

import logging
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest
from django_ratelimit.core import get_usage
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
    try:
        usage = get_usage(
            request, group=GROUP, key=client_key, rate=rate, method="POST", increment=True
        )
    except (RedisError, OSError):
        logger.warning("Submission limit not checked: the cache is unreachable", exc_info=True)
        return SubmissionLimit(exceeded=False)
    if usage is None or not usage["should_limit"]:  # None: RATELIMIT_FAIL_OPEN
        return SubmissionLimit(exceeded=False)
    return SubmissionLimit(exceeded=True, retry_after=max(usage["time_left"], 1))
