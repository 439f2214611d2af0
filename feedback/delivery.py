"""Delivery: claim a feedback, send its confirmation, record how it went.

The one send path, for the Celery worker and for the web request of the old
way alike. Each status change is a move (moves.feedback_move).
"""

import logging
import time
import uuid
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections
from django.utils import timezone

from . import receipts
from .mail import DeliveryError, log_failed_attempt, send_confirmation
from .models import Feedback
from .moves import feedback_move
from .transitions import WAITING, MoveName, claimable
from .wording import Failure, Step

logger = logging.getLogger(__name__)


# What the page shows while the (simulated) slow mail service works: stored as codes.
SEND_STEPS = tuple(Step)


class TooEarly(Exception):
    """The feedback's undo window is still open: no worker may send it for `wait` seconds."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"undo window open for {wait:.1f} s more")
        self.wait = wait


def feedback_deliver_in_request(*, feedback_id: uuid.UUID | str) -> Feedback:
    """Deliver now, in the caller's process, and end in a final state like the task does."""
    try:
        feedback_deliver(feedback_id=feedback_id)
    except DeliveryError as error:
        attempt = Feedback.objects.values_list("attempts", flat=True).get(pk=feedback_id)
        log_failed_attempt(feedback_id=feedback_id, error=error, attempt=attempt, retrying=False)
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
        MoveName.CLAIM,
        feedback_id=feedback_id,
        where=claimable(lease_ended_before=lease, now=now),
        step=SEND_STEPS[0],
        claimed_by=worker,
    )


def feedback_undo_wait(*, feedback_id: uuid.UUID | str) -> float:
    """Seconds until a waiting feedback's undo window ends (0 if it has, or it is not waiting)."""
    row = Feedback.objects.filter(pk=feedback_id, status__in=WAITING).first()
    if row is None or row.undo_until is None:
        return 0.0
    return max(0.0, (row.undo_until - timezone.now()).total_seconds())


def feedback_mark_progress(
    *, feedback_id: uuid.UUID | str, step: str, progress: int, last_seen: Feedback | None = None
) -> Feedback | None:
    return feedback_move(
        MoveName.PROGRESS,
        feedback_id=feedback_id,
        step=step,
        progress=progress,
        last_seen=last_seen,
    )


def feedback_send_email(*, feedback: Feedback) -> tuple[str, Feedback]:
    """Send the confirmation, showing progress during the simulated delay; return its
    Message-ID and the row as the last progress step left it (`feedback` if none did).

    The server's 250 is followed at once by the receipt (receipts.py), before
    anything else. Raises DeliveryError (mail.send_confirmation) when the send failed.
    """
    delay = settings.FEEDBACK_SEND_DELAY
    last_seen = feedback
    if delay > 0:
        for index, step in enumerate(SEND_STEPS):
            if index:
                progress = round(100 * index / len(SEND_STEPS))
                last_seen = (
                    feedback_mark_progress(
                        feedback_id=feedback.pk, step=step, progress=progress, last_seen=last_seen
                    )
                    or last_seen
                )
            time.sleep(delay / len(SEND_STEPS))
    message_id = send_confirmation(
        feedback=feedback, accepted=partial(receipts.receipt_write, feedback_id=feedback.pk)
    )
    return message_id, last_seen


def feedback_deliver(*, feedback_id: uuid.UUID | str, worker: str = "") -> Feedback | None:
    """Claim, send and mark sent: the one send path, for the worker and the web alike.

    A feedback the mail server already accepted (a receipt: its sender died or
    could not record it) is recorded `sent` and never sent again. Returns None
    when there was nothing to send (accepted before, or being sent by another
    delivery). Raises DeliveryError when sending failed (the caller decides
    between retrying and `feedback_mark_failed`), SentNotRecorded when the
    database would not take `sent` for a message the server accepted.
    """
    if receipts.receipt_read(feedback_id=feedback_id) is not None:
        feedback_record_sent(feedback_id=feedback_id)  # if not yet: it was accepted before
        return None
    feedback = feedback_claim(feedback_id=feedback_id, worker=worker)
    if feedback is None:
        wait = feedback_undo_wait(feedback_id=feedback_id)
        if wait > 0:  # delivered early (a redelivery, the sweeper): not yet
            raise TooEarly(wait)
        return None
    message_id, last_seen = feedback_send_email(feedback=feedback)
    return feedback_record_sent(feedback_id=feedback.pk, message_id=message_id, last_seen=last_seen)


class SentNotRecorded(OperationalError):
    """The mail server accepted the message; the database refused `sent` for RECORD_SENT_WITHIN.

    The receipt holds the acceptance: whoever comes next (the task's retry, the
    sweeper) records `sent` from it and sends nothing.
    """


# How long one delivery keeps trying to record `sent` (well inside the task's
# soft time limit), and its backoff between tries.
RECORD_SENT_WITHIN = 20.0
RECORD_SENT_BACKOFF = (0.05, 2.0)


def feedback_record_sent(
    *,
    feedback_id: uuid.UUID | str,
    message_id: str | None = None,
    last_seen: Feedback | None = None,
) -> Feedback:
    """Record `sent` for a message the mail server accepted, until the database takes it.

    A database error here is not a delivery error: the email is out. Each
    refusal (locked, restarting, a pool that timed out) is tried again with a
    bounded backoff; past RECORD_SENT_WITHIN, SentNotRecorded.

    `message_id`: the message this process just handed over. Its receipt is
    written again after each refusal: Redis may have refused the first write
    (restarting, full), and until the receipt or `sent` sticks only this
    process knows the email is out. `last_seen`: the row as this delivery's last move
    returned it (moves.feedback_move).
    """
    deadline = time.monotonic() + RECORD_SENT_WITHIN
    delay, longest = RECORD_SENT_BACKOFF
    while True:
        try:
            return feedback_mark_sent(feedback_id=feedback_id, last_seen=last_seen)
        except (OperationalError, InterfaceError) as error:
            if message_id is not None:
                receipts.receipt_write(feedback_id=feedback_id, message_id=message_id)
            if time.monotonic() + delay > deadline:
                raise SentNotRecorded(f"`sent` not recorded for {feedback_id}: {error}") from error
            logger.warning(
                "Feedback %s: accepted by the mail server, `sent` not recorded (%s); "
                "trying again in %.2f s",
                feedback_id,
                error,
                delay,
            )
        time.sleep(delay)
        delay = min(2 * delay, longest)
        close_old_connections()  # a connection the database dropped is not used again


def feedback_mark_sent(
    *, feedback_id: uuid.UUID | str, last_seen: Feedback | None = None
) -> Feedback:
    sent = feedback_move(MoveName.SENT, feedback_id=feedback_id, last_seen=last_seen)
    if sent is None:  # no longer `sending` (taken back meanwhile): the receipt says it is sent
        sent = feedback_move(MoveName.SENT_ON_RECEIPT, feedback_id=feedback_id)
    return sent or Feedback.objects.get(pk=feedback_id)


def feedback_mark_failed(*, feedback_id: uuid.UUID | str, reason: Failure) -> Feedback:
    failed = feedback_move(MoveName.FAIL, feedback_id=feedback_id, **reason.fields())
    return failed or Feedback.objects.get(pk=feedback_id)


def feedback_mark_retrying(
    *, feedback_id: uuid.UUID | str, reason: Failure, next_retry_at: datetime
) -> Feedback:
    """Record a failed attempt that will be tried again at `next_retry_at`."""
    retrying = feedback_move(
        MoveName.RETRY, feedback_id=feedback_id, next_retry_at=next_retry_at, **reason.fields()
    )
    return retrying or Feedback.objects.get(pk=feedback_id)
