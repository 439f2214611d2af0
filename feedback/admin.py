from django.contrib import admin

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
    readonly_fields = [
        "id",
        "status",
        "progress",
        "step",
        "attempts",
        "failure_reason",
        "next_retry_at",
        "version",
        "created_at",
        "updated_at",
        "sent_at",
    ]
