"""Your place in the queue: how many are sent before a queued feedback, and when it starts.

Measured, not assumed: a send takes the mean of the last sends (claim to sent), and the
workers are the last census (workers/presence.py). With `busy` sends under way, a feedback
with `ahead` others before it starts in about

    max(0, ahead + busy - workers + 1) * send_seconds / workers

seconds, and never before its undo window ends. Written as `base + ahead * step`, so a page
recomputes it from one queue-wide event (`queue_render`) that lists only the head of the line
(FEEDBACK_QUEUE_LINE_MAX submit times) and the count of all queued: its size stays bounded, and
the queue never publishes per watcher.
"""

import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connections
from django.db.models import Count, Window
from django.template.loader import render_to_string
from django.utils import timezone

from realtime.publish import broadcast
from realtime.watchers import is_watched
from workers.presence import workers_processes

from .models import Feedback
from .transitions import GOAL, HELD, IN_LINE

logger = logging.getLogger(__name__)

QUEUE_GROUP = "feedback.queue"
QUEUE_PARTIAL = "feedback/detail.html#queue"
MEASURED_SENDS = 20  # the mean send time is taken over this many of the latest
# Seconds a rendered status may reuse this process's pace (two queries and a Redis read that
# every queued status paid); its place is always counted afresh, the queue-wide event's pace too.
PACE_MAX_AGE = 1.0
# At least this many seconds between two queue-wide events of one process: each reads and
# renders the head of the line, so one per claim made a drain of N quadratic.
QUEUE_EVENT_INTERVAL = 0.25
# Frames per second the queue-wide events of one process may send in all (each goes to every
# queued watcher): after an event that counted N queued, the next waits N / this if longer.
QUEUE_EVENT_FANOUT = 200


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class Pace:
    """How fast the line moves now: start estimate = max(0, base + ahead * step)."""

    workers: int
    busy: int
    send_seconds: float | None  # None until a send was measured

    @property
    def step(self) -> float | None:
        return None if self.send_seconds is None else self.send_seconds / self.workers

    @property
    def base(self) -> float | None:
        return None if self.step is None else (self.busy - self.workers + 1) * self.step

    def starts_in(self, *, ahead: int) -> float | None:
        return None if self.step is None else max(0.0, self.base + ahead * self.step)


@dataclass(frozen=True)
class Place:
    ahead: int
    starts_in: int | None  # whole seconds, rounded up; None when there is no measure yet


def measured_send_seconds() -> float | None:
    # The difference is taken on the rows read, so the (status, sent_at) index walks only
    # the latest (in SQL it was computed for every sent row before the sort).
    recent = (
        Feedback.objects.filter(status=GOAL, claimed_at__isnull=False, sent_at__isnull=False)
        .order_by("-sent_at")
        .values_list("claimed_at", "sent_at")[:MEASURED_SENDS]
    )
    took = [(sent_at - claimed_at).total_seconds() for claimed_at, sent_at in recent]
    return sum(took) / len(took) if took else None


def queue_pace() -> Pace:
    busy = Feedback.objects.filter(status=HELD).count()
    workers = workers_processes() or max(1, busy)
    return Pace(workers=workers, busy=busy, send_seconds=measured_send_seconds())


_recent_pace: tuple[float, Pace] | None = None  # (time.monotonic() when read, pace)


def queue_pace_recent(*, max_age: float) -> Pace:
    """This process's last pace if younger than max_age seconds, else a new one (0: new)."""
    global _recent_pace
    now = time.monotonic()
    recent = _recent_pace  # read once: another thread may replace it meanwhile
    if recent is not None and 0 <= now - recent[0] < max_age:
        return recent[1]
    _recent_pace = (now, queue_pace())
    return _recent_pace[1]


def feedback_place(
    *, feedback: Feedback, now: datetime | None = None, pace_max_age: float = 0
) -> Place | None:
    """Where a queued feedback stands in the line (its pace at most `pace_max_age` s old);
    None when it is not in the line."""
    if feedback.status not in IN_LINE:
        return None
    now = now or timezone.now()
    ahead = Feedback.objects.filter(status__in=IN_LINE, created_at__lt=feedback.created_at).count()
    starts_in = queue_pace_recent(max_age=pace_max_age).starts_in(ahead=ahead)
    if starts_in is not None and feedback.undo_until is not None:
        starts_in = max(starts_in, (feedback.undo_until - now).total_seconds())
    return Place(ahead=ahead, starts_in=None if starts_in is None else math.ceil(starts_in))


def queue_context() -> dict:
    """The queue-wide event: the head of the line (submit times), how many are queued, the pace."""
    head = list(  # one statement: the count of all queued rides along with the first few
        Feedback.objects.filter(status__in=IN_LINE)
        .order_by("created_at")
        .annotate(queued=Window(Count("pk")))
        .values_list("created_at", "queued")[: settings.FEEDBACK_QUEUE_LINE_MAX]
    )
    return {
        "line": " ".join(str(epoch_ms(at)) for at, _ in head),
        "count": head[0][1] if head else 0,
        "pace": queue_pace(),
        "at_ms": int(time.time() * 1000),
    }


def queue_render() -> tuple[str, int]:
    """The queue-wide event's HTML, and how many queued feedback it counts."""
    context = queue_context()
    return render_to_string(QUEUE_PARTIAL, context), context["count"]


def feedback_publish_queue() -> int:
    """Publish the queue-wide event; return how many queued feedback it counted (0 when
    nobody watches the queue: then nothing is read, rendered or sent)."""
    if not is_watched(QUEUE_GROUP):
        return 0
    html, queued = queue_render()
    broadcast(group=QUEUE_GROUP, html=html)
    return queued


def queue_event_interval(*, queued: int) -> float:
    """Seconds before the next queue-wide event, after one that counted `queued`."""
    return max(QUEUE_EVENT_INTERVAL, queued / QUEUE_EVENT_FANOUT)


class _QueueEvents:
    """Publishes the queue-wide event after a change of the line, coalescing a burst.

    The first change after a quiet interval is published at once; the changes within it
    together, once, when it ends (on a short-lived timer thread), so the last event shows
    the line as it is after the last change.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = float("-inf")  # time.monotonic() from which the next event may go
        self._due: threading.Timer | None = None

    def changed(self) -> None:
        with self._lock:
            if self._due is not None or not self._may_publish_now():
                return  # the due event will read the line as it is then
        self._publish()

    def _may_publish_now(self) -> bool:
        """With the lock held: True (holding the next event back), or a timer set for when."""
        now = time.monotonic()
        if self._next > now:
            self._due = threading.Timer(self._next - now, self._publish_due)
            self._due.daemon = True
            self._due.start()
            return False
        self._next = now + QUEUE_EVENT_INTERVAL  # until this event has counted the line
        return True

    def _publish(self) -> None:
        started = time.monotonic()
        queued = feedback_publish_queue()
        with self._lock:
            self._next = max(self._next, started + queue_event_interval(queued=queued))

    def _publish_due(self) -> None:
        try:
            with self._lock:
                self._due = None
                if not self._may_publish_now():  # an event meanwhile counted a longer line
                    return
            self._publish()
        except Exception:  # a hint: the next change publishes again
            logger.warning("Could not publish the queue-wide event", exc_info=True)
        finally:
            connections.close_all()  # this thread's own connections end with it

    def forget(self) -> None:
        """In a forked child (Celery's prefork pool): no timer runs there."""
        self.__init__()


_queue_events = _QueueEvents()
os.register_at_fork(after_in_child=_queue_events.forget)


def feedback_queue_changed() -> None:
    """The line changed (a row left or joined it): tell its watchers, at a bounded rate."""
    _queue_events.changed()
