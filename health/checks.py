"""Is each part the app needs answering? Each check is bounded in time and never raises."""

import logging
from dataclasses import asdict, dataclass, field

import redis
from django.conf import settings
from django.db import connection

from django_celery.celery import app as celery_app

logger = logging.getLogger(__name__)

# Seconds a check may take; a health endpoint that hangs is worse than one that says no.
TIMEOUT = 1.0


@dataclass
class Check:
    ok: bool
    detail: str = ""
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        data = asdict(self)
        data.update(data.pop("extra"))
        return {key: value for key, value in data.items() if value != ""}


def check_database() -> Check:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        logger.warning("health: the database does not answer", exc_info=True)
        return Check(ok=False, detail="the database does not answer")
    return Check(ok=True)


def check_redis() -> Check:
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT
    )
    try:
        client.ping()
    except redis.RedisError:
        logger.warning("health: Redis does not answer", exc_info=True)
        return Check(ok=False, detail="Redis does not answer")
    finally:
        client.close()
    return Check(ok=True)


def check_worker(*, redis_ok: bool) -> Check:
    if not redis_ok:
        # The ping travels through Redis: without it the answer is known, and
        # asking would only wait on broker connection retries.
        return Check(ok=False, detail="not asked: Redis does not answer")
    try:
        # limit=1: answer as soon as one worker replies rather than waiting the full timeout.
        replies = celery_app.control.ping(timeout=TIMEOUT, limit=1)
    except Exception:
        logger.warning("health: could not ping the workers", exc_info=True)
        return Check(ok=False, detail="could not ask the workers")
    if not replies:
        return Check(ok=False, detail=f"no worker answered within {TIMEOUT:g} s")
    return Check(ok=True, extra={"workers": len(replies)})


def health_report() -> tuple[bool, dict]:
    """All checks, and whether all passed."""
    redis_check = check_redis()
    checks = {
        "database": check_database(),
        "redis": redis_check,
        "worker": check_worker(redis_ok=redis_check.ok),
    }
    healthy = all(check.ok for check in checks.values())
    report = {
        "status": "ok" if healthy else "unhealthy",
        "checks": {name: check.as_dict() for name, check in checks.items()},
    }
    return healthy, report
