from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

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
    list_display = ["email", "status", "attempts", "created_at", "updated_at", "sent_at"]
    list_filter = ["status"]
    search_fields = ["email"]
    date_hierarchy = "created_at"
    actions = ["resend"]
    readonly_fields = [
        "id",
        "status",
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

    @admin.action(description="Resend the confirmation of selected failed feedback")
    def resend(self, request: HttpRequest, queryset: QuerySet[Feedback]) -> None:
        # Through the same send-once path as a first send: only `failed` rows
        # move back to `queued`, so a sent email never goes out twice.
        ids = list(queryset.values_list("pk", flat=True))
        resent = sum(services.feedback_resend(feedback_id=pk) for pk in ids)
        skipped = len(ids) - resent
        if resent:
            self.message_user(request, f"Queued {resent} confirmation(s) again.", messages.SUCCESS)
        if skipped:
            self.message_user(
                request,
                f"Left {skipped} alone: only failed feedback can be resent.",
                messages.WARNING,
            )
