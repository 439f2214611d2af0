"""Receipts: the mail server accepted a feedback's confirmation (docs/decisions/).

Written in Redis right after the server's 250 for the DATA, before anything
else: a database that refuses the `sent` write (locked, restarting, failing
over) cannot lose it. The delivery, the task's retry and the sweeper read it
before they would send: a feedback with a receipt is recorded `sent`, never
handed to the mail server again.

Through django-redis's `get_redis_connection()`, the app's one way to Redis
(its keys prefixed as the cache's are), so the cache's socket timeouts bound
every call.
"""

import logging
import uuid

from django.conf import settings
from django.core.cache import cache
from django_redis import get_redis_connection
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# Never shorter than a week, and far longer than any row can stay unrecorded:
# a lease, then every attempt with its longest backoff and time limit.
RECEIPT_TTL_MIN = 7 * 24 * 60 * 60


def receipt_key(feedback_id: uuid.UUID | str) -> str:
    return cache.make_and_validate_key(f"feedback.receipt:{uuid.UUID(str(feedback_id)).hex}")


def receipt_ttl() -> int:
    horizon = (
        settings.FEEDBACK_SENDING_LEASE
        + settings.FEEDBACK_STUCK_AFTER
        + settings.FEEDBACK_MAX_ATTEMPTS
        * (settings.FEEDBACK_RETRY_BACKOFF_MAX + settings.CELERY_TASK_TIME_LIMIT)
    )
    return int(max(RECEIPT_TTL_MIN, 10 * horizon))


def receipt_write(*, feedback_id: uuid.UUID | str, message_id: str) -> bool:
    """Note that the server accepted the message `message_id`; False if Redis refused.

    Never raises: the message is out, and what follows (recording `sent`) must run.
    """
    try:
        get_redis_connection().set(receipt_key(feedback_id), message_id, ex=receipt_ttl())
    except (RedisError, OSError) as error:
        logger.error(
            "Feedback %s: accepted by the mail server, its receipt not written (%s)",
            feedback_id,
            error,
        )
        return False
    return True


def receipt_read(*, feedback_id: uuid.UUID | str) -> str | None:
    """The accepted message's Message-ID, or None. Raises RedisError when Redis cannot say."""
    message_id = get_redis_connection().get(receipt_key(feedback_id))
    return message_id.decode() if message_id is not None else None
