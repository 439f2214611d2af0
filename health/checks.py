"""Is each part the app needs answering? Each check is bounded in time and never raises.

A probe must never be able to take the site down, however often it is asked:

- one check runs at a time per process, and its result serves every request
  for HEALTH_CACHE_SECONDS; a request that cannot get the result within
  a few seconds is answered 503 "busy", never kept waiting;
- the workers are asked on a broker connection of their own (workers/presence.py),
  so the wait never holds a connection of the pool that submissions enqueue through.
"""

import logging
import threading
import time
from dataclasses import asdict, dataclass, field

from django.conf import settings
from django.core.cache import cache
from django.db import connection

from workers.presence import workers_present

logger = logging.getLogger(__name__)


def wait_for_running_check() -> float:
    """Seconds a request waits for the check another request is running: the three checks
    together take at most about a Redis timeout and the workers' (the database's is short)."""
    return settings.REDIS_TIMEOUT + settings.WORKER_PRESENCE_TIMEOUT + 1


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
    try:
        cache.has_key("health")  # one round trip, through the app's own Redis client
    except Exception:
        logger.warning("health: Redis does not answer", exc_info=True)
        return Check(ok=False, detail="Redis does not answer")
    return Check(ok=True)


def check_worker(*, redis_ok: bool) -> Check:
    if not redis_ok:
        # The question travels through Redis: without it the answer is known, and
        # asking would only wait on broker connection retries.
        return Check(ok=False, detail="not asked: Redis does not answer")
    # limit=1: answer as soon as one worker replies rather than waiting the full timeout.
    present = workers_present(limit=1)
    if present is None:
        return Check(ok=False, detail="could not ask the workers")
    if not present:
        timeout = settings.WORKER_PRESENCE_TIMEOUT
        return Check(ok=False, detail=f"no worker answered within {timeout:g} s")
    return Check(ok=True, extra={"workers": len(present)})


def _run_checks() -> tuple[bool, dict]:
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


BUSY = (False, {"status": "unhealthy", "detail": "busy: a health check is already running"})


class _Cached:
    """The last report and when it was made; one refresh at a time."""

    def __init__(self) -> None:
        self.refreshing = threading.Lock()
        self.report: tuple[bool, dict] | None = None
        self.made_at = 0.0

    def fresh(self) -> tuple[bool, dict] | None:
        if self.report and time.monotonic() - self.made_at < settings.HEALTH_CACHE_SECONDS:
            return self.report
        return None

    def get(self) -> tuple[bool, dict]:
        if report := self.fresh():
            return report
        if not self.refreshing.acquire(timeout=wait_for_running_check()):
            return BUSY
        try:
            if report := self.fresh():  # made by the request we waited for
                return report
            self.report = _run_checks()
            self.made_at = time.monotonic()
            return self.report
        finally:
            self.refreshing.release()

    def forget(self) -> None:
        self.report = None


_cached = _Cached()


def health_report() -> tuple[bool, dict]:
    """All checks (at most HEALTH_CACHE_SECONDS old), and whether all passed."""
    return _cached.get()


def health_report_forget() -> None:
    """The next report runs the checks again (tests that change what is up)."""
    _cached.forget()
