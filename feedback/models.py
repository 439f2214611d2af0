import uuid

from django.db import models
from django.utils import timezone


class Status(models.TextChoices):
    """Where a feedback is in its life; the moves between them are in transitions.py."""

    QUEUED = "queued", "Queued"
    SENDING = "sending", "Sending"
    RETRYING = "retrying", "Retrying"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class SendMode(models.TextChoices):
    ASYNC = "async", "With Celery"
    SYNC = "sync", "The old way (before)"


class Feedback(models.Model):
    Status = Status

    # A random id: nothing about one feedback tells you another's.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField()
    message = models.TextField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    # What the person sees while sending: a percentage and the current step.
    progress = models.PositiveSmallIntegerField(default=0)
    step = models.CharField(max_length=100, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # The Celery worker node that made the last claim (its `-n` name), empty when
    # the web sent it: the sweeper takes the row back at once if that node is dead.
    claimed_by = models.CharField(max_length=200, blank=True)
    failure_reason = models.CharField(max_length=300, blank=True)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    # No worker may claim the row before this time: the submitter may still
    # undo it (FEEDBACK_UNDO_SECONDS). Null: no window (the old way, a resend).
    undo_until = models.DateTimeField(null=True, blank=True)
    # When the last claim took it: with sent_at, the measured send time that
    # the queue's estimates come from.
    claimed_at = models.DateTimeField(null=True, blank=True)
    # Grows with every saved change, so watchers can drop stale updates.
    version = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "feedback"
        indexes = [
            models.Index(fields=["status", "updated_at"]),
            # The queue: who is ahead (created_at), and the latest sends (sent_at).
            models.Index(fields=["status", "created_at"]),
            models.Index(fields=["status", "sent_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.email} ({self.status})"


class FeedbackEvent(models.Model):
    """One status change with its time, so the page can show how long each step took."""

    feedback = models.ForeignKey(Feedback, on_delete=models.CASCADE, related_name="events")
    status = models.CharField(max_length=16, choices=Status.choices)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"{self.status} at {self.at:%H:%M:%S.%f}"
