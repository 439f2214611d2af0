"""Your place in the queue: how many are sent before a queued feedback, and when it starts.

Measured, not assumed: the time one send takes is the mean of the last sends
(claim to sent), the number of workers is what the workers announce
(capacity.py). The line drains at `workers / send time` per second, so a
feedback with `ahead` others before it starts in about

    max(0, ahead + busy - workers + 1) * send_seconds / workers

seconds (`busy`: sends under way), and never before its undo window ends.
Written as `base + ahead * step` so the page can recompute it from one
queue-wide event (`queue_render`): the queue never publishes per watcher.
The event lists only the head of the line (settings.FEEDBACK_QUEUE_LINE_MAX
submit times, about 14 bytes each) and the count of all queued, so its size
stays bounded however long the line is: a page further back knows only that at
least that many are ahead of it.
"""

import math
import time
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import Count, Window
from django.template.loader import render_to_string
from django.utils import timezone

from .capacity import workers_consuming
from .models import Feedback, Status
from .transitions import HELD

QUEUE_GROUP = "feedback.queue"
QUEUE_PARTIAL = "feedback/detail.html#queue"
# How many of the latest sends the mean is taken over.
MEASURED_SENDS = 20
# A rendered status (the answer to a submission, a watcher's snapshot or re-read) may
# use a pace this many seconds old, read at most once per interval per process: two
# queries and a Redis read that every queued status paid. The place (how many are
# ahead) is always counted afresh, and the queue-wide event reads the pace afresh.
PACE_MAX_AGE = 1.0


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
        step = self.step
        return None if step is None else (self.busy - self.workers + 1) * step

    def starts_in(self, *, ahead: int) -> float | None:
        if self.base is None or self.step is None:
            return None
        return max(0.0, self.base + ahead * self.step)


@dataclass(frozen=True)
class Place:
    ahead: int
    starts_in: int | None  # whole seconds, rounded up; None when there is no measure yet


def measured_send_seconds() -> float | None:
    # The difference is taken here, on the rows read: computed in SQL it was
    # evaluated (in Python, on SQLite) for every sent row before the sort.
    # The (status, sent_at) index walks only the latest.
    recent = (
        Feedback.objects.filter(status=Status.SENT, claimed_at__isnull=False, sent_at__isnull=False)
        .order_by("-sent_at")
        .values_list("claimed_at", "sent_at")[:MEASURED_SENDS]
    )
    took = [(sent_at - claimed_at).total_seconds() for claimed_at, sent_at in recent]
    return sum(took) / len(took) if took else None


def queue_pace() -> Pace:
    busy = Feedback.objects.filter(status=HELD).count()
    workers = workers_consuming() or max(1, busy)
    return Pace(workers=workers, busy=busy, send_seconds=measured_send_seconds())


_recent_pace: tuple[float, Pace] | None = None  # (time.monotonic() when read, pace)


def queue_pace_recent(*, max_age: float) -> Pace:
    """The pace, read again only if the one this process read last is older than max_age s
    (0: always read now)."""
    global _recent_pace
    now = time.monotonic()
    recent = _recent_pace  # one read: another thread may replace it meanwhile
    if recent is not None and 0 <= now - recent[0] < max_age:
        return recent[1]
    pace = queue_pace()
    _recent_pace = (now, pace)
    return pace


def whole_seconds(seconds: float | None) -> int | None:
    return None if seconds is None else math.ceil(seconds)


def feedback_place(
    *, feedback: Feedback, now: datetime | None = None, pace_max_age: float = 0
) -> Place | None:
    """Where a queued feedback stands in the line; None when it is not queued.

    `pace_max_age`: seconds the start estimate's pace may be old (0: read now).
    """
    if feedback.status != Status.QUEUED:
        return None
    now = now or timezone.now()
    ahead = Feedback.objects.filter(status=Status.QUEUED, created_at__lt=feedback.created_at)
    count = ahead.count()
    starts_in = queue_pace_recent(max_age=pace_max_age).starts_in(ahead=count)
    if starts_in is not None and feedback.undo_until is not None:
        starts_in = max(starts_in, (feedback.undo_until - now).total_seconds())
    return Place(ahead=count, starts_in=whole_seconds(starts_in))


def queue_context() -> dict:
    """The queue-wide event: the head of the line (submit times), how many are queued, the pace."""
    # One statement: the count of all queued rows rides along with the first few.
    head = list(
        Feedback.objects.filter(status=Status.QUEUED)
        .order_by("created_at")
        .annotate(queued=Window(Count("pk")))
        .values_list("created_at", "queued")[: settings.FEEDBACK_QUEUE_LINE_MAX]
    )
    pace = queue_pace()
    return {
        "line": " ".join(str(epoch_ms(at)) for at, _ in head),
        "count": head[0][1] if head else 0,
        "pace": pace,
        "at_ms": int(time.time() * 1000),
    }


def queue_render() -> tuple[str, int]:
    """The queue-wide event's HTML, and how many queued feedback it counts."""
    context = queue_context()
    return render_to_string(QUEUE_PARTIAL, context), context["count"]
