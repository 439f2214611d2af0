"""Writes: every change to a Feedback happens here, each status change through `feedback_move`.

The allowed moves are the table in transitions.py. A move is saved on the row
first and published to watchers once committed: the row is the truth, a
published update only a hint.
"""

import logging
import os
import threading
import time
import uuid
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.db.models import Case, F, Q, QuerySet, Value, When
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _

from django_celery.worker_liveness import dead_workers
from realtime.publish import broadcast, publish

from .mail import (  # noqa: F401  (public names, kept where tooling and tests find them)
    DeliveryError,
    build_confirmation_email,
    describe_send_error,
    is_transient_send_error,
    log_failed_attempt,
    send_confirmation,
)
from .models import Feedback, FeedbackEvent, SendMode, Status
from .queue import QUEUE_GROUP, queue_render
from .selectors import (  # noqa: F401  (as above)
    feedback_render_status,
    feedback_snapshot,
    status_group,
)
from .transitions import HELD, MOVES, NOW, WAITING, claimable, is_final

logger = logging.getLogger(__name__)

# What the page shows while the (simulated) slow mail service works. Stored on
# the row as text, in the feedback's language (see feedback_in_language and
# in_row_language).
SEND_STEPS = (
    _("Preparing your confirmation"),
    _("Connecting to the mail server"),
    _("Handing the message over"),
)

WORKER_LOST_REASON = _("The worker stopped before it finished.")


class MoveError(TypeError):
    """A caller gave a move values it does not take, or left out one it needs."""


class TooEarly(Exception):
    """The feedback's undo window is still open: no worker may send it for `wait` seconds."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"undo window open for {wait:.1f} s more")
        self.wait = wait


def feedback_move(
    name: str, *, feedback_id: uuid.UUID | str, where: Q | None = None, **given: Any
) -> Feedback | None:
    """Make the move `name` of transitions.MOVES on one row; the row after it, or None if refused.

    One conditional UPDATE (`status IN` the move's sources, and `where`: a
    version, a lease), so two processes never both make it. Refused, nothing
    is changed, recorded or published. Watchers are told once the transaction
    commits (at once outside one), so a rolled back move is never shown.
    """
    move = MOVES[name]
    if set(given) != set(move.takes):
        raise MoveError(f"move {name!r} takes {sorted(move.takes)}, got {sorted(given)}")
    now = timezone.now()
    sets = {field: now if value is NOW else value for field, value in move.sets.items()}
    with transaction.atomic():
        feedback = _update_returning(
            Feedback.objects.filter(where or Q(), status__in=move.source),
            feedback_id=feedback_id,
            **sets,
            **given,
            status=move.target,
            version=F("version") + 1,
            updated_at=now,
        )
        if feedback is None:
            return None
        if move.records_event:
            FeedbackEvent.objects.create(feedback=feedback, status=feedback.status, at=now)
        # robust: the move is committed whatever happens to its publishing (a hint).
        transaction.on_commit(partial(feedback_publish, feedback=feedback), robust=True)
        if Status.QUEUED in move.source:
            # The line changed: one queue-wide event, from which every queued
            # page computes its own place (never one publish per watcher).
            transaction.on_commit(feedback_queue_changed, robust=True)
    return feedback


# Every column, in the order Model.from_db takes them.
_ROW = Feedback._meta.concrete_fields


def _update_returning(
    changed: QuerySet[Feedback], *, feedback_id: uuid.UUID | str, **values: Any
) -> Feedback | None:
    """`changed.update(**values)` on the one row `feedback_id`, returning it as it is after.

    One statement, ``UPDATE … RETURNING`` (PostgreSQL, SQLite), where update()
    and a read after it were two: the read was a third of a move's SQL.
    Django's update() returns only a count; QuerySet._update is what
    Model.save() uses for the same (fields as (field, model, value) triples;
    the returned columns come back with their converters applied). A backend
    without RETURNING gets empty rows back: the row is then read after.
    """
    fields = [(Feedback._meta.get_field(name), None, value) for name, value in values.items()]
    rows = changed.filter(pk=feedback_id)._update(fields, returning_fields=_ROW)
    if not rows:
        return None
    if not rows[0]:
        return Feedback.objects.get(pk=feedback_id)
    return Feedback.from_db(changed.db, [field.attname for field in _ROW], rows[0])


def feedback_publish(*, feedback: Feedback) -> bool:
    return publish(
        group=status_group(feedback.pk),
        html=feedback_render_status(feedback=feedback),
        version=feedback.version,
        final=is_final(feedback.status),
    )


def feedback_publish_queue() -> int:
    """Publish the queue-wide event; return how many queued feedback it counted."""
    html, queued = queue_render()
    broadcast(group=QUEUE_GROUP, html=html)
    return queued


# At least this many seconds between two queue-wide events from one process. Each
# event reads and renders the head of the line, so one per claim made a drain of N
# quadratic; a person reading "N ahead of you" sees no difference at this pace.
QUEUE_EVENT_INTERVAL = 0.25
# Frames a second the queue-wide events of one process may send in all: each goes
# to every queued watcher (a socket per page), so after an event that counted N
# queued the next waits N / QUEUE_EVENT_FANOUT seconds if that is longer. With a
# long line the numbers on a page move less often; its start estimate still counts
# down between events (static/js/queue.js).
QUEUE_EVENT_FANOUT = 200


def queue_event_interval(*, queued: int) -> float:
    """Seconds before the next queue-wide event, after one that counted `queued`."""
    return max(QUEUE_EVENT_INTERVAL, queued / QUEUE_EVENT_FANOUT)


class _QueueEvents:
    """Publishes the queue-wide event after a change of the line, coalescing a burst.

    The first change after a quiet interval (queue_event_interval) is published
    at once; changes within it are published together, once, when it ends (on
    a short-lived thread), so the last event always shows the line as it is
    after the last change.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = float("-inf")  # time.monotonic() from which the next event may go
        self._due: threading.Timer | None = None

    def changed(self) -> None:
        with self._lock:
            if self._due is not None:
                return  # an event is due: it will read the line as it is then
            if not self._may_publish_now():
                return
        self._publish()

    def _may_publish_now(self) -> bool:
        """With the lock held: True (and the next event held back) or a timer set for when."""
        now = time.monotonic()
        wait = self._next - now
        if wait > 0:
            self._due = threading.Timer(wait, self._publish_due)
            self._due.daemon = True
            self._due.start()
            return False
        # Until this event has counted the line, the shortest interval holds.
        self._next = now + QUEUE_EVENT_INTERVAL
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
                # The event published meanwhile counted a longer line: wait longer.
                if not self._may_publish_now():
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


def _enqueue(feedback_id: uuid.UUID | str, countdown: float = 0) -> None:
    from .tasks import send_feedback_email

    # A bounded wait for a pooled broker connection (Celery's own waits for
    # ever): past it, LimitExceeded leaves the row queued for the sweeper.
    with send_feedback_email.app.pool.acquire(
        block=True, timeout=settings.FEEDBACK_ENQUEUE_WAIT
    ) as connection:
        send_feedback_email.apply_async(
            args=(str(feedback_id),), countdown=countdown or None, connection=connection
        )


def _enqueue_on_commit(feedback_id: uuid.UUID | str, countdown: float = 0) -> None:
    # robust: if the broker is down the caller still gets its answer; the row
    # stays waiting and the sweeper (feedback_requeue_stuck) enqueues it later.
    transaction.on_commit(lambda: _enqueue(feedback_id, countdown), robust=True)


def feedback_in_language(*, feedback_id: uuid.UUID | str) -> translation.override:
    """Speak the feedback's language (the one it was submitted in) inside the block.

    What is written for the person while it is sent (its step, a failure's
    reason) is stored as text in that language, whatever the process's own.
    """
    language = Feedback.objects.filter(pk=feedback_id).values_list("language", flat=True).first()
    return translation.override(language or settings.LANGUAGE_CODE)


def in_row_language(text: str) -> Case:
    """`text` (a lazy translation) in the language of the row it is written to.

    The database picks the translation, so a write in the person's language
    (the claim's first step) needs no read of the row before it. A language
    this site does not speak gets LANGUAGE_CODE's, as feedback_in_language does.
    """
    spoken = []
    for code, _name in settings.LANGUAGES:
        with translation.override(code):
            spoken.append(When(language=code, then=Value(str(text))))
    with translation.override(settings.LANGUAGE_CODE):
        return Case(*spoken, default=Value(str(text)))


def feedback_create(
    *,
    email: str,
    message: str,
    enqueue: bool = True,
    undo_seconds: float = 0,
    language: str = settings.LANGUAGE_CODE,
    time_zone: str = "",
) -> Feedback:
    """Store the feedback and (unless told not to) queue its confirmation once committed.

    With `undo_seconds`, no worker may claim it before that many seconds have
    passed (the claim checks `undo_until`), and its task is only due then.
    """
    now = timezone.now()
    undo_until = now + timedelta(seconds=undo_seconds) if undo_seconds > 0 else None
    with transaction.atomic():
        feedback = Feedback.objects.create(
            email=email,
            message=message,
            undo_until=undo_until,
            language=language,
            time_zone=time_zone,
        )
        FeedbackEvent.objects.create(
            feedback=feedback, status=feedback.status, at=feedback.created_at
        )
        if enqueue:
            _enqueue_on_commit(feedback.pk, countdown=undo_seconds)
    return feedback


def feedback_submit(
    *,
    email: str,
    message: str,
    mode: str = SendMode.ASYNC,
    language: str = settings.LANGUAGE_CODE,
    time_zone: str = "",
) -> Feedback:
    """Take a submission, the Celery way or the old way.

    The old way (`sync`) is the "before" of the demo: the very same delivery
    the worker runs, but inside the web request, so the person waits for the
    slow mail service. Only where the send runs differs.
    """
    about = {"email": email, "message": message, "language": language, "time_zone": time_zone}
    if mode != SendMode.SYNC:
        return feedback_create(**about, undo_seconds=settings.FEEDBACK_UNDO_SECONDS)
    feedback = feedback_create(**about, enqueue=False)
    return feedback_deliver_in_request(feedback_id=feedback.pk)


def feedback_deliver_in_request(*, feedback_id: uuid.UUID | str) -> Feedback:
    """Deliver now, in the caller's process, and end in a final state like the task does."""
    with feedback_in_language(feedback_id=feedback_id):
        try:
            feedback_deliver(feedback_id=feedback_id)
        except DeliveryError as error:
            attempt = Feedback.objects.values_list("attempts", flat=True).get(pk=feedback_id)
            log_failed_attempt(
                feedback_id=feedback_id, error=error, attempt=attempt, retrying=False
            )
            feedback_mark_failed(feedback_id=feedback_id, reason=error.reason_for(retrying=False))
    return Feedback.objects.get(pk=feedback_id)


def feedback_claim(*, feedback_id: uuid.UUID | str, worker: str = "") -> Feedback | None:
    """Move a waiting feedback to `sending`; None if there is nothing to claim.

    A conditional update (no lock is held across the SMTP call), so two
    deliveries of the same task cannot both claim the row, a row being sent
    is left to its sender, and a row already sent is never sent again. A
    live send changes its row at least once per FEEDBACK_SENDING_LEASE (the
    task's hard time limit ends it before then), so a `sending` row left
    untouched for longer has no one working on it and may be claimed.

    `worker` is the claiming Celery node's name (empty in a web request): if
    that node dies, the sweeper sees it and takes the row back in seconds.
    """
    now = timezone.now()
    lease = now - timedelta(seconds=settings.FEEDBACK_SENDING_LEASE)
    return feedback_move(
        "claim",
        feedback_id=feedback_id,
        where=claimable(lease_ended_before=lease, now=now),
        step=in_row_language(SEND_STEPS[0]),
        claimed_by=worker,
    )


def feedback_undo_wait(*, feedback_id: uuid.UUID | str) -> float:
    """Seconds until a waiting feedback's undo window ends (0 if it has, or it is not waiting)."""
    row = Feedback.objects.filter(pk=feedback_id, status__in=WAITING).first()
    if row is None or row.undo_until is None:
        return 0.0
    return max(0.0, (row.undo_until - timezone.now()).total_seconds())


def feedback_mark_progress(
    *, feedback_id: uuid.UUID | str, step: str, progress: int
) -> Feedback | None:
    return feedback_move("progress", feedback_id=feedback_id, step=step, progress=progress)


def feedback_send_email(*, feedback: Feedback) -> None:
    """Send the confirmation, showing progress during the simulated delay.

    Raises DeliveryError (mail.send_confirmation) when the send failed.
    """
    delay = settings.FEEDBACK_SEND_DELAY
    if delay > 0:
        for index, step in enumerate(SEND_STEPS):
            if index:
                progress = round(100 * index / len(SEND_STEPS))
                feedback_mark_progress(feedback_id=feedback.pk, step=str(step), progress=progress)
            time.sleep(delay / len(SEND_STEPS))
    send_confirmation(feedback=feedback)


def feedback_deliver(*, feedback_id: uuid.UUID | str, worker: str = "") -> Feedback | None:
    """Claim, send and mark sent: the one send path, for the worker and the web alike.

    Returns None when there was nothing to send (already sent, or being sent
    by another delivery). Raises DeliveryError when sending failed; the
    caller decides between retrying and `feedback_mark_failed`.
    """
    feedback = feedback_claim(feedback_id=feedback_id, worker=worker)
    if feedback is None:
        wait = feedback_undo_wait(feedback_id=feedback_id)
        if wait > 0:  # delivered early (a redelivery, the sweeper): not yet
            raise TooEarly(wait)
        return None
    # Its steps and a failure's reason in the person's language: the claimed row says which.
    with translation.override(feedback.language or settings.LANGUAGE_CODE):
        feedback_send_email(feedback=feedback)
        return feedback_mark_sent(feedback=feedback)


def feedback_mark_sent(*, feedback: Feedback) -> Feedback:
    sent = feedback_move("sent", feedback_id=feedback.pk)
    if sent is None:  # taken from its sender meanwhile (lease ran out): the row says what happens
        logger.warning("Feedback %s was sent but is no longer `sending`", feedback.pk)
        return Feedback.objects.get(pk=feedback.pk)
    return sent


def feedback_mark_failed(*, feedback_id: uuid.UUID | str, reason: str) -> Feedback:
    failed = feedback_move("fail", feedback_id=feedback_id, failure_reason=reason[:300])
    return failed or Feedback.objects.get(pk=feedback_id)


def feedback_mark_retrying(
    *, feedback_id: uuid.UUID | str, reason: str, next_retry_at: datetime
) -> Feedback:
    """Record a failed attempt that will be tried again at `next_retry_at`."""
    retrying = feedback_move(
        "retry", feedback_id=feedback_id, failure_reason=reason[:300], next_retry_at=next_retry_at
    )
    return retrying or Feedback.objects.get(pk=feedback_id)


def feedback_requeue_stuck(*, now: datetime | None = None) -> list[uuid.UUID]:
    """Enqueue again the feedback that no task will pick up by itself; return their ids.

    - waiting (`queued`, or `retrying` past its retry time) for longer than
      FEEDBACK_STUCK_AFTER: its task was never published (the broker was down
      at submit) or was lost with its worker;
    - `sending` untouched for longer than FEEDBACK_SENDING_LEASE, or claimed
      by a worker node that is dead (no heartbeat, no answer to a ping:
      django_celery.worker_liveness), which is noticed in seconds: its worker
      died mid-send. It turns `retrying` (so the person sees why), or
      `failed` once it has used up FEEDBACK_MAX_ATTEMPTS.

    Enqueuing twice is harmless: the claim lets one delivery through. Each
    requeued waiting row's `updated_at` is touched, so the next sweep leaves
    it alone for another FEEDBACK_STUCK_AFTER.
    """
    now = now or timezone.now()
    stuck = now - timedelta(seconds=settings.FEEDBACK_STUCK_AFTER)
    requeued: list[uuid.UUID] = []

    waiting = Feedback.objects.filter(
        Q(next_retry_at__isnull=True) | Q(next_retry_at__lt=stuck),
        status__in=WAITING,
        updated_at__lt=stuck,
    )
    for feedback_id, updated_at in waiting.values_list("pk", "updated_at"):
        # Not a move (the status stays): a touch, conditional, so a row a
        # worker claimed meanwhile is left alone.
        touched = Feedback.objects.filter(
            pk=feedback_id, status__in=WAITING, updated_at=updated_at
        ).update(updated_at=now)
        if touched:
            requeued.append(feedback_id)
    _enqueue_again(requeued, what="stuck")
    return requeued + feedback_take_back_abandoned(now=now)


def feedback_take_back_abandoned(*, now: datetime | None = None) -> list[uuid.UUID]:
    """The `sending` part of feedback_requeue_stuck alone: rows whose lease ended or whose
    worker node is dead turn `retrying` (or `failed`, attempts used up) and are enqueued.

    Beat also runs it on a queue of its own (settings.FEEDBACK_SWEEP_QUEUE): behind
    a backlog on the sending queue a sweep expires before it runs, and a row a killed
    pool process left `sending` would wait for the whole backlog to drain.
    """
    now = now or timezone.now()
    lease = now - timedelta(seconds=settings.FEEDBACK_SENDING_LEASE)
    requeued: list[uuid.UUID] = []
    held_by = Feedback.objects.filter(status=HELD).exclude(claimed_by="")
    dead = dead_workers(held_by.values_list("claimed_by", flat=True).distinct())
    abandoned = Feedback.objects.filter(
        Q(updated_at__lt=lease) | Q(claimed_by__in=dead), status=HELD
    )
    rows = abandoned.values_list("pk", "version", "attempts", "language")
    for feedback_id, version, attempts, language in rows:
        unchanged = Q(version=version)
        with translation.override(language):
            reason = str(WORKER_LOST_REASON)
        if attempts >= settings.FEEDBACK_MAX_ATTEMPTS:
            feedback_move("fail", feedback_id=feedback_id, where=unchanged, failure_reason=reason)
        elif feedback_move(
            "retry",
            feedback_id=feedback_id,
            where=unchanged,
            failure_reason=reason,
            next_retry_at=now,
        ):
            requeued.append(feedback_id)

    _enqueue_again(requeued, what="abandoned")
    return requeued


def _enqueue_again(feedback_ids: list[uuid.UUID], *, what: str) -> None:
    for feedback_id in feedback_ids:
        _enqueue_on_commit(feedback_id)
    if feedback_ids:
        logger.info("Re-enqueued %d %s feedback: %s", len(feedback_ids), what, feedback_ids)


def feedback_cancel(*, feedback_id: uuid.UUID | str) -> Feedback | None:
    """Take a feedback back before it is sent: Undo while queued, "Stop trying" while retrying.

    The same conditional update as every move, so it cannot race a worker:
    if the claim won, nothing changes and None is returned (too late).
    """
    return feedback_move("cancel", feedback_id=feedback_id)


def feedback_resend(*, feedback_id: uuid.UUID | str) -> bool:
    """Give a failed feedback a fresh set of attempts and queue it (the admin's "resend").

    Only a `failed` row can be resent (the table says so), so a sent email never goes out twice.
    """
    with transaction.atomic():
        if feedback_move("resend", feedback_id=feedback_id) is None:
            return False
        _enqueue_on_commit(feedback_id)
    return True
