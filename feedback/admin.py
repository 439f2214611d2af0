from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import services
from .models import Feedback, FeedbackEvent


class FeedbackEventInline(admin.TabularInline):
    model = FeedbackEvent
    extra = 0
    can_delete = False
    readonly_fields = ["status", "at"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    inlines = [FeedbackEventInline]
    list_display = [
        "email",
        "status",
        "language",
        "attempts",
        "created_at",
        "updated_at",
        "sent_at",
    ]
    list_filter = ["status", "language"]
    search_fields = ["email"]
    date_hierarchy = "created_at"
    actions = ["resend"]
    readonly_fields = [
        "id",
        "status",
        "language",
        "time_zone",
        "progress",
        "step",
        "attempts",
        "failure_reason",
        "next_retry_at",
        "undo_until",
        "claimed_at",
        "version",
        "created_at",
        "updated_at",
        "sent_at",
    ]

    @admin.action(description=_("Resend the confirmation of selected failed feedback"))
    def resend(self, request: HttpRequest, queryset: QuerySet[Feedback]) -> None:
        # Through the same send-once path as a first send: only `failed` rows
        # move back to `queued`, so a sent email never goes out twice.
        ids = list(queryset.values_list("pk", flat=True))
        resent = sum(services.feedback_resend(feedback_id=pk) for pk in ids)
        skipped = len(ids) - resent
        if resent:
            queued = ngettext(
                "Queued %(count)d confirmation again.",
                "Queued %(count)d confirmations again.",
                resent,
            )
            self.message_user(request, queued % {"count": resent}, messages.SUCCESS)
        if skipped:
            left = ngettext(
                "Left %(count)d alone: only failed feedback can be resent.",
                "Left %(count)d alone: only failed feedback can be resent.",
                skipped,
            )
            self.message_user(request, left % {"count": skipped}, messages.WARNING)
