import hashlib
import uuid
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.contrib.auth import SESSION_KEY as USER_SESSION_KEY
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from realtime.tokens import SESSION_KEY as WATCHER_SESSION_KEY


class TaskResultStatus(models.TextChoices):
    """django.tasks' statuses (same values), and CANCELLED, which it does not have yet."""

    READY = "READY", pgettext_lazy("task status", "Waiting")
    RUNNING = "RUNNING", pgettext_lazy("task status", "Running")
    SUCCESSFUL = "SUCCESSFUL", pgettext_lazy("task status", "Done")
    FAILED = "FAILED", pgettext_lazy("task status", "Failed")
    CANCELLED = "CANCELLED", pgettext_lazy("task status", "Cancelled")


FINISHED = frozenset({
    TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED, TaskResultStatus.CANCELLED
})  # fmt: skip


def owner_digest(key: str) -> str:
    """What a result keeps of its owner's watcher key: enough to check it, not to use it."""
    return hashlib.sha256(key.encode()).hexdigest()


class LiveTaskResultQuerySet(models.QuerySet):
    def owned_by(self, session: Mapping[str, Any]) -> "LiveTaskResultQuerySet":
        """The results this session started: its watcher key and, if one was logged in when
        the task was enqueued, the same user (`request.session`, or a socket's session)."""
        key = session.get(WATCHER_SESSION_KEY)
        if not isinstance(key, str) or not key:
            return self.none()
        user_id = session.get(USER_SESSION_KEY)
        same_user = models.Q(owner__isnull=True)
        if isinstance(user_id, str):  # written by Django's login: the user's pk, as text
            same_user |= models.Q(owner_id=user_id)
        return self.filter(same_user, owner_session=owner_digest(key))


class LiveTaskResult(models.Model):
    """One run of a live task: the truth its card shows (a push is only a hint)."""

    Status = TaskResultStatus

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # The Celery task's name, and what it is called with (JSON, as the message would carry).
    name = models.CharField(_("task"), max_length=200)
    args = models.JSONField(_("arguments"), default=list, blank=True)
    kwargs = models.JSONField(_("keyword arguments"), default=dict, blank=True)
    status = models.CharField(
        _("status"), max_length=16, choices=TaskResultStatus.choices,
        default=TaskResultStatus.READY,
    )  # fmt: skip
    done = models.PositiveIntegerField(_("done"), default=0)
    total = models.PositiveIntegerField(_("total"), null=True, blank=True)
    # The current step as the task wrote it, in LANGUAGE_CODE: put into the reader's words
    # when the card renders (gettext), as a marked string's msgid.
    step = models.CharField(_("step"), max_length=200, blank=True)
    # Grows with every saved change, so watchers can drop stale updates.
    version = models.PositiveIntegerField(_("version"), default=0)
    cancellable = models.BooleanField(_("cancellable"), default=False)
    cancel_requested_at = models.DateTimeField(_("cancel asked at"), null=True, blank=True)
    # Who may watch, cancel and download: the session that started it (a hash of its
    # watcher key, realtime/tokens.py) and, when logged in, the user.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("owner"), null=True, blank=True,
        on_delete=models.CASCADE, related_name="+",
    )  # fmt: skip
    owner_session = models.CharField(_("owner session"), max_length=64, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    # Touched by every stored change: a RUNNING row untouched for LIVETASKS_LEASE is
    # taken for a dead worker's (livetasks/sweeping.py).
    updated_at = models.DateTimeField(_("updated at"), default=timezone.now)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    # For the logs and the admin, never shown to the owner (it may say too much).
    error = models.TextField(_("error"), blank=True)
    # A file in the "livetasks" storage, set only when the task ended SUCCESSFUL.
    output_path = models.CharField(_("output file"), max_length=300, blank=True)
    output_name = models.CharField(_("output name"), max_length=200, blank=True)
    output_content_type = models.CharField(_("output type"), max_length=100, blank=True)
    # What the task returned (JSON), kept once it ended SUCCESSFUL; None before and otherwise.
    return_value = models.JSONField(_("return value"), null=True, blank=True)

    objects = LiveTaskResultQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("live task")
        verbose_name_plural = _("live tasks")
        indexes = [
            models.Index(fields=["status", "updated_at"]),
            models.Index(fields=["finished_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_status_display()})"

    def refresh(self) -> None:
        """Read the stored state again (django.tasks' TaskResult.refresh)."""
        self.refresh_from_db()

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED

    @property
    def has_output(self) -> bool:
        return self.status == TaskResultStatus.SUCCESSFUL and bool(self.output_path)

    @property
    def is_cancelling(self) -> bool:
        return self.cancel_requested_at is not None and not self.is_finished

    @property
    def can_cancel(self) -> bool:
        return self.cancellable and not self.is_finished and self.cancel_requested_at is None

    @property
    def percent(self) -> int | None:
        if not self.total:
            return None
        return min(100, self.done * 100 // self.total)

    @property
    def eta_seconds(self) -> int | None:
        """Seconds left at the pace so far; None until something is done."""
        if self.status != TaskResultStatus.RUNNING or not self.total or not self.done:
            return None
        if self.started_at is None or self.done >= self.total:
            return None
        elapsed = (timezone.now() - self.started_at).total_seconds()
        return max(0, round(elapsed / self.done * (self.total - self.done)))
