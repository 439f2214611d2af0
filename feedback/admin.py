"""The admin keeps the record: a feedback is shown, never edited there.

What staff may do to a feedback is what the transition table lets a person do
(its by-hand moves), through the same services as the public page: Resend a
failed one, Cancel one that waits (Undo, Stop trying). The change page shows
the feedback's status card, live over the page's one socket, with a watch
token bound to the staff member's own session.

On the list, "Resend all selected" and "Export as CSV" run as one background
job each (feedback/jobs.py); the admin then shows the job's live card on a page
of its own, which only the staff member who started it can open.
"""

import uuid
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import ActionLocation
from django.contrib.auth import get_permission_codename
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template import engines
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from livetasks import LiveTaskResult

from . import jobs, services
from .models import Feedback, FeedbackEvent, Status
from .selectors import feedback_render_status
from .tokens import feedback_token
from .transitions import is_final


class FeedbackEventInline(admin.TabularInline):
    """The timeline as recorded: one row per status change, never edited."""

    model = FeedbackEvent
    extra = 0
    fields = readonly_fields = ["status", "at"]

    def has_add_permission(self, request: HttpRequest, obj: Feedback | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Feedback | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Feedback | None = None) -> bool:
        return False


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    inlines = [FeedbackEventInline]
    list_display = [
        "email",
        "status_badge",
        "language",
        "attempts",
        "created_at",
        "updated_at",
        "sent_at",
    ]
    list_filter = ["status", "language"]
    search_fields = ["email"]
    date_hierarchy = "created_at"

    class Media:
        # The badge and the card in the admin's colours (the list and the change page).
        css = {"all": ["css/admin.css"]}

    actions = ["resend_selected", "export_csv", "resend", "cancel"]
    # Every column, shown (a new one too); none is editable (has_change_permission).
    fields = readonly_fields = [
        field.name for field in Feedback._meta.get_fields() if field.concrete
    ]

    # -- The record: read, never written -------------------------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A feedback starts only through the form's service (its first event,
        # its task, its undo window, its language), never as a bare row.
        return False

    def has_change_permission(self, request: HttpRequest, obj: Feedback | None = None) -> bool:
        # What was sent, to whom, and which worker holds it: the admin shows it,
        # the moves change it (see has_move_permission).
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Feedback | None = None) -> bool:
        if obj is not None and not is_final(obj.status):
            return False  # still waiting or being sent: its worker would lose it mid-way
        return super().has_delete_permission(request, obj)

    def delete_model(self, request: HttpRequest, obj: Feedback) -> None:
        services.feedback_delete(feedback_ids=[obj.pk])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Feedback]) -> None:
        services.feedback_delete(feedback_ids=queryset.values_list("pk", flat=True))

    # -- What staff may do: the table's by-hand moves, through the services ----------

    def has_move_permission(self, request: HttpRequest) -> bool:
        """The moves a person makes (Resend, Cancel) need the model's change permission."""
        codename = get_permission_codename("change", self.opts)
        return request.user.has_perm(f"{self.opts.app_label}.{codename}")

    @admin.action(
        permissions=["move"],
        description=_("Resend the confirmation of selected failed feedback"),
        location=ActionLocation.CHANGE_FORM,
    )
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

    @admin.action(
        permissions=["move"],
        # The public page's words (Undo is Stop trying before the first attempt).
        description=_("Stop trying"),
        location=ActionLocation.CHANGE_FORM,
    )
    def cancel(self, request: HttpRequest, queryset: QuerySet[Feedback]) -> None:
        # The public page's Undo / Stop trying, with its words: the same move,
        # refused the same way once a worker claimed it or it is final.
        for feedback_id in queryset.values_list("pk", flat=True):
            if services.feedback_cancel(feedback_id=feedback_id) is not None:
                self.message_user(request, gettext("Cancelled: no email was sent."))
                continue
            feedback = Feedback.objects.filter(pk=feedback_id).first()
            if feedback is None:
                continue  # deleted meanwhile: the change page says so
            too_late = gettext("Too late to take it back: it is already %(status)s.")
            status = feedback.get_status_display().lower()
            self.message_user(request, too_late % {"status": status}, messages.WARNING)

    # -- Bulk jobs: one background job for the whole selection, watched live ----------

    @admin.action(permissions=["move"], description=_("Resend all selected"))
    def resend_selected(
        self, request: HttpRequest, queryset: QuerySet[Feedback]
    ) -> HttpResponse | None:
        # Only failed rows can be resent: the others are counted and said so now, and the
        # service checks each again when the job reaches it.
        failed = queryset.filter(status=Status.FAILED)
        resendable = failed.count()
        if skipped := queryset.count() - resendable:
            left = ngettext(
                "Left %(count)d alone: only failed feedback can be resent.",
                "Left %(count)d alone: only failed feedback can be resent.",
                skipped,
            )
            self.message_user(request, left % {"count": skipped}, messages.WARNING)
        if not resendable:
            return None  # nothing to do: back to the list, with the message
        return self.start_job(request, jobs.feedback_resend_selected, failed)

    @admin.action(permissions=["view"], description=_("Export as CSV"))
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Feedback]) -> HttpResponse:
        return self.start_job(request, jobs.feedback_export_csv, queryset, request.LANGUAGE_CODE)

    def start_job(
        self, request: HttpRequest, job: Any, queryset: QuerySet[Feedback], *args: str
    ) -> HttpResponse:
        # The ids in the rows' order, so that the export writes them in that order.
        ids = [str(pk) for pk in queryset.order_by("created_at", "pk").values_list("pk", flat=True)]
        result = job.enqueue(ids, *args, owner=request)
        # Redirected, so that a reload of the job's page never starts the job again.
        return HttpResponseRedirect(reverse("admin:feedback_feedback_job", args=[result.pk]))

    def get_urls(self) -> list:
        view = self.admin_site.admin_view(self.job_view)
        return [
            path("jobs/<uuid:result_id>/", view, name="feedback_feedback_job"),
            *super().get_urls(),
        ]

    def job_view(self, request: HttpRequest, result_id: uuid.UUID) -> HttpResponse:
        """The job's live card in the admin's look; 404 for anyone but the session that started
        it."""
        result = LiveTaskResult.objects.owned_by(request.session).filter(pk=result_id).first()
        if result is None:
            raise Http404
        card = JOB_CARD.render({"result": result}, request)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": JOB_TITLES.get(result.name, _("Background job")),
            "card": card,
        }
        return TemplateResponse(request, "admin/feedback/feedback/job.html", context)

    # -- The status, as every page shows it --------------------------------------------

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, feedback: Feedback) -> str:
        return render_to_string("admin/feedback/feedback/status_badge.html", {"feedback": feedback})

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict,
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Feedback | None = None,
    ):
        if obj is not None:
            # The staff member's own watch: bound to this session, like a submitter's.
            context["watch_token"] = feedback_token(obj.pk, session=request.session)
            context["status_card"] = feedback_render_status(feedback=obj)
            context["status_final"] = is_final(obj.status)
        return super().render_change_form(request, context, add, change, form_url, obj)


JOB_CARD = engines["django"].from_string("{% load livetasks %}{% live_task_card result %}")
JOB_TITLES = {
    jobs.feedback_resend_selected.name: _("Resend all selected"),
    jobs.feedback_export_csv.name: _("Export as CSV"),
}
