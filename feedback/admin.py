from django.contrib import admin

from .models import Feedback


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
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
