import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from .wording import Reason, Step, failure_text


class Status(models.TextChoices):
    """Where a feedback is in its life; the moves between them are in transitions.py."""

    QUEUED = "queued", pgettext_lazy("status", "Queued")
    SENDING = "sending", pgettext_lazy("status", "Sending")
    RETRYING = "retrying", pgettext_lazy("status", "Retrying")
    SENT = "sent", pgettext_lazy("status", "Sent")
    FAILED = "failed", pgettext_lazy("status", "Failed")
    CANCELLED = "cancelled", pgettext_lazy("status", "Cancelled")


class SendMode(models.TextChoices):
    ASYNC = "async", _("With Celery")
    SYNC = "sync", _("The old way (before)")


class Feedback(models.Model):
    Status = Status

    # A random id: nothing about one feedback tells you another's.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(_("email address"))
    message = models.TextField(_("message"))
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.QUEUED
    )
    # The language of the page it was sent from: its email speaks it. A card
    # speaks its reader's: nothing else on the row is words (feedback/wording.py).
    language = models.CharField(
        _("language"), max_length=16, choices=settings.LANGUAGES, default="en"
    )
    # The submitter's IANA time zone if their page told it ("" is UTC): the times in its status.
    time_zone = models.CharField(_("time zone"), max_length=64, blank=True)
    # What the person sees while sending: a percentage and the current step.
    progress = models.PositiveSmallIntegerField(_("progress"), default=0)
    step = models.CharField(_("step"), max_length=32, choices=Step.choices, blank=True)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    # The Celery worker node that made the last claim (its `-n` name), empty when
    # the web sent it: the sweeper takes the row back at once if that node is dead.
    claimed_by = models.CharField(_("claimed by"), max_length=200, blank=True)
    # Why the last attempt failed: a code, and its data (the server's answer, what comes next).
    failure_reason = models.CharField(
        _("failure reason"), max_length=32, choices=Reason.choices, blank=True
    )
    failure_detail = models.JSONField(_("failure detail"), default=dict, blank=True)
    next_retry_at = models.DateTimeField(_("next attempt at"), null=True, blank=True)
    # No worker may claim the row before this time: the submitter may still
    # undo it (FEEDBACK_UNDO_SECONDS). Null: no window (the old way, a resend).
    undo_until = models.DateTimeField(_("undo possible until"), null=True, blank=True)
    # When the last claim took it: with sent_at, the measured send time that
    # the queue's estimates come from.
    claimed_at = models.DateTimeField(_("claimed at"), null=True, blank=True)
    # Grows with every saved change, so watchers can drop stale updates.
    version = models.PositiveIntegerField(_("version"), default=0)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("feedback")
        verbose_name_plural = _("feedback")
        indexes = [
            models.Index(fields=["status", "updated_at"]),
            # The queue: who is ahead (created_at), and the latest sends (sent_at).
            models.Index(fields=["status", "created_at"]),
            models.Index(fields=["status", "sent_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.email} ({self.status})"

    @property
    def failure_text(self) -> str:
        """Why the last attempt failed, in words, in the active language."""
        return failure_text(self.failure_reason, self.failure_detail)


class FeedbackEvent(models.Model):
    """One status change with its time, so the page can show how long each step took."""

    feedback = models.ForeignKey(
        Feedback, on_delete=models.CASCADE, related_name="events", verbose_name=_("feedback")
    )
    status = models.CharField(_("status"), max_length=16, choices=Status.choices)
    at = models.DateTimeField(_("at"), default=timezone.now)

    class Meta:
        ordering = ["at", "pk"]
        verbose_name = _("status change")
        verbose_name_plural = _("status changes")

    def __str__(self) -> str:
        return f"{self.status} at {self.at:%H:%M:%S.%f}"
