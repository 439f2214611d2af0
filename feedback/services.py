"""Every change to a Feedback happens here.

Each state change is saved on the row first and then published to watchers:
the row is the truth, a published update only a hint.
"""

import contextlib
import logging
import smtplib
import socket
import ssl
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core import mail
from django.core.mail import EmailMessage
from django.db import models, transaction
from django.db.models import F
from django.template.loader import render_to_string
from django.utils import timezone

from realtime.publish import publish
from realtime.watch import Snapshot

from .models import Feedback, FeedbackEvent
from .tokens import feedback_id_from_token

logger = logging.getLogger(__name__)

Status = Feedback.Status

STATUS_PARTIAL = "feedback/detail.html#status"

# What the page shows while the (simulated) slow mail service works.
SEND_STEPS = (
    "Preparing your confirmation",
    "Connecting to the mail server",
    "Handing the message over",
)


def status_group(feedback_id: uuid.UUID | str) -> str:
    return f"feedback.{feedback_id}"


def feedback_render_status(*, feedback: Feedback) -> str:
    return render_to_string(STATUS_PARTIAL, {"feedback": feedback})


def feedback_snapshot(token: str, *, session: Mapping[str, Any]) -> Snapshot | None:
    """The current state for a watch token, or None if the token is not valid
    (forged, expired, or not issued to this session)."""
    feedback_id = feedback_id_from_token(token, session=session)
    if feedback_id is None:
        return None
    feedback = Feedback.objects.filter(pk=feedback_id).first()
    if feedback is None:
        return None
    return Snapshot(
        group=status_group(feedback.pk),
        html=feedback_render_status(feedback=feedback),
        version=feedback.version,
        final=feedback.is_final,
    )


def _broadcast(feedback: Feedback) -> None:
    publish(
        group=status_group(feedback.pk),
        html=feedback_render_status(feedback=feedback),
        version=feedback.version,
        final=feedback.is_final,
    )


def _change(feedback: Feedback, **fields: object) -> Feedback:
    """Save `fields` and a new version on the row, then tell the watchers."""
    for name, value in fields.items():
        setattr(feedback, name, value)
    feedback.version += 1
    feedback.save(update_fields=[*fields, "version", "updated_at"])
    if "status" in fields:
        _record_event(feedback)
    _broadcast(feedback)
    return feedback


def _record_event(feedback: Feedback, *, at: datetime | None = None) -> None:
    """Note the status change with its time, for the timeline (before it is published)."""
    FeedbackEvent.objects.create(feedback=feedback, status=feedback.status, at=at or timezone.now())


def _enqueue(feedback_id: uuid.UUID | str) -> None:
    from .tasks import send_feedback_email

    # A bounded wait for a pooled broker connection (Celery's own waits for
    # ever): past it, LimitExceeded leaves the row queued for the sweeper.
    with send_feedback_email.app.pool.acquire(
        block=True, timeout=settings.FEEDBACK_ENQUEUE_WAIT
    ) as connection:
        send_feedback_email.apply_async(args=(str(feedback_id),), connection=connection)


def _enqueue_on_commit(feedback_id: uuid.UUID | str) -> None:
    # robust: if the broker is down the caller still gets its answer; the row
    # stays waiting and the sweeper (feedback_requeue_stuck) enqueues it later.
    transaction.on_commit(lambda: _enqueue(feedback_id), robust=True)


def feedback_create(*, email: str, message: str, enqueue: bool = True) -> Feedback:
    """Store the feedback and (unless told not to) queue its confirmation once committed."""
    with transaction.atomic():
        feedback = Feedback.objects.create(email=email, message=message)
        _record_event(feedback, at=feedback.created_at)
        if enqueue:
            _enqueue_on_commit(feedback.pk)
    return feedback


class SendMode(models.TextChoices):
    ASYNC = "async", "With Celery"
    SYNC = "sync", "The old way (before)"


def feedback_submit(*, email: str, message: str, mode: str = SendMode.ASYNC) -> Feedback:
    """Take a submission, the Celery way or the old way.

    The old way (`sync`) is the "before" of the demo: the very same delivery
    the worker runs, but inside the web request, so the person waits for the
    slow mail service. Only where the send runs differs.
    """
    if mode != SendMode.SYNC:
        return feedback_create(email=email, message=message)
    feedback = feedback_create(email=email, message=message, enqueue=False)
    return feedback_deliver_in_request(feedback_id=feedback.pk)


def feedback_deliver_in_request(*, feedback_id: uuid.UUID | str) -> Feedback:
    """Deliver now, in the caller's process, and end in a final state like the task does."""
    try:
        feedback_deliver(feedback_id=feedback_id)
    except DeliveryError as error:
        feedback_mark_failed(feedback_id=feedback_id, reason=error.reason)
    return Feedback.objects.get(pk=feedback_id)


def _claimable() -> models.Q:
    """Rows a delivery may take: waiting ones, and `sending` ones whose worker died.

    A live send changes its row at least once per lease (the task's hard time
    limit ends it before then), so a `sending` row left untouched for longer
    than FEEDBACK_SENDING_LEASE has no one working on it.
    """
    stale = timezone.now() - timedelta(seconds=settings.FEEDBACK_SENDING_LEASE)
    return models.Q(status__in=[Status.QUEUED, Status.RETRYING]) | models.Q(
        status=Status.SENDING, updated_at__lt=stale
    )


def feedback_claim(*, feedback_id: uuid.UUID | str) -> Feedback | None:
    """Move a waiting feedback to `sending`; None if there is nothing to claim.

    A conditional update (no lock is held across the SMTP call), so two
    deliveries of the same task cannot both claim the row, a row being sent
    is left to its sender, and a row already sent is never sent again.
    """
    claimed = Feedback.objects.filter(_claimable(), pk=feedback_id).update(
        status=Status.SENDING,
        attempts=F("attempts") + 1,
        progress=0,
        step=SEND_STEPS[0],
        next_retry_at=None,
        version=F("version") + 1,
        updated_at=timezone.now(),
    )
    if not claimed:
        return None
    feedback = Feedback.objects.get(pk=feedback_id)
    _record_event(feedback, at=feedback.updated_at)
    _broadcast(feedback)
    return feedback


def build_confirmation_email(*, feedback: Feedback) -> EmailMessage:
    quoted = "\n".join(f"> {line}" for line in feedback.message.splitlines()) or ">"
    body = render_to_string(
        "feedback/confirmation_email.txt", {"feedback": feedback, "quoted": quoted}
    )
    domain = settings.DEFAULT_FROM_EMAIL.rpartition("@")[2].strip(">") or "localhost"
    return EmailMessage(
        subject="Thanks for your feedback",
        body=body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[feedback.email],
        # Stable per feedback, so a mail that was accepted but not recorded as
        # sent (the worker died in between) can be deduplicated downstream.
        headers={"Message-ID": f"<feedback-{feedback.pk}@{domain}>"},
    )


class DeliveryError(Exception):
    """The confirmation could not be sent; `reason` is fit to show a person.

    `transient`: trying again later may work (a 4xx reply, a refused or
    dropped connection, a timeout); otherwise it will fail the same way.
    """

    def __init__(self, reason: str, *, cause: BaseException, transient: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.cause = cause
        self.transient = transient


def feedback_send_email(*, feedback: Feedback) -> None:
    """Send the confirmation, showing progress during the simulated delay.

    SMTP and network errors are raised as DeliveryError, and so is an address
    Django refuses to put in a header (a line break: header injection).
    """
    delay = settings.FEEDBACK_SEND_DELAY
    if delay > 0:
        for index, step in enumerate(SEND_STEPS):
            progress = round(100 * index / len(SEND_STEPS))
            if index:
                _change(feedback, step=step, progress=progress)
            time.sleep(delay / len(SEND_STEPS))
    message = build_confirmation_email(feedback=feedback)
    mailer = mail.mailers.default
    try:
        # Opened here so that send_messages() does not close the connection:
        # once the server has accepted the message, a failure while saying
        # goodbye (QUIT) must not count as a failed send and mail it again.
        mailer.open()
        mailer.send_messages([message])
    except (smtplib.SMTPException, OSError) as error:
        raise DeliveryError(
            describe_send_error(error), cause=error, transient=is_transient_send_error(error)
        ) from error
    except ValueError as error:
        # Django refuses a header with a line break (header injection). The
        # form refuses such addresses; this guards rows stored any other way.
        raise DeliveryError(
            "The email address cannot be used.", cause=error, transient=False
        ) from error
    finally:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            mailer.close()


def feedback_deliver(*, feedback_id: uuid.UUID | str) -> Feedback | None:
    """Claim, send and mark sent: the one send path, for the worker and the web alike.

    Returns None when there was nothing to send (already sent, or being sent
    by another delivery). Raises DeliveryError when sending failed; the
    caller decides between retrying and `feedback_mark_failed`.
    """
    feedback = feedback_claim(feedback_id=feedback_id)
    if feedback is None:
        return None
    feedback_send_email(feedback=feedback)
    return feedback_mark_sent(feedback=feedback)


def feedback_mark_sent(*, feedback: Feedback) -> Feedback:
    return _change(
        feedback,
        status=Status.SENT,
        progress=100,
        step="",
        failure_reason="",
        next_retry_at=None,
        sent_at=timezone.now(),
    )


def feedback_mark_failed(*, feedback_id: uuid.UUID | str, reason: str) -> Feedback:
    feedback = Feedback.objects.get(pk=feedback_id)
    return _change(
        feedback, status=Status.FAILED, step="", next_retry_at=None, failure_reason=reason[:300]
    )


def feedback_mark_retrying(
    *, feedback_id: uuid.UUID | str, reason: str, next_retry_at: datetime
) -> Feedback:
    """Record a failed attempt that will be tried again at `next_retry_at`."""
    feedback = Feedback.objects.get(pk=feedback_id)
    return _change(
        feedback,
        status=Status.RETRYING,
        step="",
        progress=0,
        failure_reason=reason[:300],
        next_retry_at=next_retry_at,
    )


WORKER_LOST_REASON = "The worker stopped before it finished."


def feedback_requeue_stuck(*, now: datetime | None = None) -> list[uuid.UUID]:
    """Enqueue again the feedback that no task will pick up by itself; return their ids.

    - `queued` for longer than FEEDBACK_STUCK_AFTER: its task was never
      published (the broker was down at submit) or was lost;
    - `retrying` more than FEEDBACK_STUCK_AFTER past its retry time: the retry
      was lost with its worker;
    - `sending` untouched for longer than FEEDBACK_SENDING_LEASE: its worker
      died mid-send. It turns `retrying` (so the person sees why), or
      `failed` once it has used up FEEDBACK_MAX_ATTEMPTS.

    Enqueuing twice is harmless: the claim lets one delivery through. Each
    requeued row's `updated_at` is touched, so the next sweep leaves it alone
    for another FEEDBACK_STUCK_AFTER.
    """
    now = now or timezone.now()
    stuck = now - timedelta(seconds=settings.FEEDBACK_STUCK_AFTER)
    lease = now - timedelta(seconds=settings.FEEDBACK_SENDING_LEASE)
    requeued: list[uuid.UUID] = []

    waiting = Feedback.objects.filter(
        models.Q(status=Status.QUEUED)
        | models.Q(status=Status.RETRYING, next_retry_at__lt=stuck)
        | models.Q(status=Status.RETRYING, next_retry_at__isnull=True),
        updated_at__lt=stuck,
    )
    for feedback_id, updated_at in waiting.values_list("pk", "updated_at"):
        # Conditional, so a row a worker claimed meanwhile is left alone.
        touched = Feedback.objects.filter(
            pk=feedback_id, status__in=[Status.QUEUED, Status.RETRYING], updated_at=updated_at
        ).update(updated_at=now)
        if touched:
            requeued.append(feedback_id)

    for feedback in Feedback.objects.filter(status=Status.SENDING, updated_at__lt=lease):
        if feedback.attempts >= settings.FEEDBACK_MAX_ATTEMPTS:
            _change_if(feedback, Status.SENDING, status=Status.FAILED, step="",
                       next_retry_at=None, failure_reason=WORKER_LOST_REASON)  # fmt: skip
        elif _change_if(feedback, Status.SENDING, status=Status.RETRYING, step="", progress=0,
                        next_retry_at=now, failure_reason=WORKER_LOST_REASON):  # fmt: skip
            requeued.append(feedback.pk)

    for feedback_id in requeued:
        _enqueue_on_commit(feedback_id)
    if requeued:
        logger.info("Re-enqueued %d stuck feedback: %s", len(requeued), requeued)
    return requeued


def _change_if(feedback: Feedback, expected: str, **fields: object) -> bool:
    """`_change`, but only if the row is still in status `expected` and unchanged."""
    updated = Feedback.objects.filter(
        pk=feedback.pk, status=expected, version=feedback.version
    ).update(**fields, version=F("version") + 1, updated_at=timezone.now())
    if updated:
        feedback.refresh_from_db()
        if "status" in fields:
            _record_event(feedback, at=feedback.updated_at)
        _broadcast(feedback)
    return bool(updated)


def feedback_resend(*, feedback_id: uuid.UUID | str) -> bool:
    """Give a failed feedback a fresh set of attempts and queue it (the admin's "resend").

    Only a `failed` row can be resent, so a sent email never goes out twice.
    """
    with transaction.atomic():
        feedback = Feedback.objects.filter(pk=feedback_id, status=Status.FAILED).first()
        if feedback is None or not _change_if(
            feedback, Status.FAILED, status=Status.QUEUED, attempts=0, progress=0, step="",
            failure_reason="", next_retry_at=None,
        ):  # fmt: skip
            return False
        _enqueue_on_commit(feedback_id)
    return True


def _smtp_code(error: BaseException) -> int | None:
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        # Refused as a whole only if every recipient's refusal was permanent.
        codes = [code for code, _ in error.recipients.values()]
        return max(codes) if codes else None
    return getattr(error, "smtp_code", None)


def is_transient_send_error(error: BaseException) -> bool:
    """Whether sending again later may succeed.

    SMTP says so itself: 4xx replies are temporary, 5xx permanent (recipient
    refused, credentials rejected). A connection that was refused, dropped
    or timed out is transient; TLS certificate problems and unsupported
    features are configuration, so permanent.
    """
    code = _smtp_code(error)
    if isinstance(code, int) and 400 <= code < 600:
        return code < 500
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return True
    if isinstance(error, ssl.SSLCertVerificationError):
        return False
    if isinstance(error, smtplib.SMTPException):
        return False  # e.g. AUTH or STARTTLS not supported: configuration
    return isinstance(error, OSError)


def describe_send_error(error: BaseException) -> str:
    """A reason a person can read, without a traceback."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return "The mail server refused the recipient address."
    if isinstance(error, smtplib.SMTPAuthenticationError):
        return "The mail server did not accept our credentials."
    if isinstance(error, smtplib.SMTPServerDisconnected):
        if "timed out" in str(error):  # smtplib wraps a read timeout this way
            return "The mail server did not answer in time."
        return "The mail server closed the connection."
    if isinstance(error, smtplib.SMTPResponseException):
        text = error.smtp_error
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        return f"The mail server answered {error.smtp_code}: {text}".strip()
    if isinstance(error, TimeoutError | socket.timeout):
        return "The mail server did not answer in time."
    if isinstance(error, ConnectionRefusedError):
        return "The mail server refused the connection."
    if isinstance(error, OSError):
        return "The mail server could not be reached."
    return "The email could not be sent."
