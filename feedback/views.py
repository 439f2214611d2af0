from functools import lru_cache
from http import HTTPStatus

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404, render
from django.template.loader import render_to_string
from django.urls import get_script_prefix, reverse
from django.utils import timezone, translation
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext, ngettext
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_http_methods, require_POST, require_safe
from django_htmx.http import HTMX_STOP_POLLING
from django_htmx.middleware import HtmxDetails

from web.shedding import sheds_with

from . import services
from .answers import answers_recent, answers_timed, with_server_timing
from .forms import FeedbackForm
from .limits import SubmissionLimit, submission_limit_take
from .models import Feedback, SendMode
from .selectors import feedback_session_cards, feedback_status_context
from .submissions import submissions_remember
from .tokens import feedback_id_from_token, feedback_token, watcher_key
from .transitions import is_final


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


# The pages that show a person's submission are for that browser only.
private_page = cache_control(private=True, no_store=True)


def busy_form(request: HtmxHttpRequest, retry_after: int) -> HttpResponse:
    """A submission shed because the database is busy: the form as it was sent, and why.

    Reads nothing from the database (it is busy): the full page comes without cards.
    """
    if request.method != "POST":
        return render(request, "503.html", {"retry_after": retry_after})
    form = FeedbackForm(request.POST)
    form.is_valid()
    form.add_error(None, gettext("Busy, try again in %(seconds)d s.") % {"seconds": retry_after})
    if request.htmx:
        return render(request, FORM_PARTIAL, {"form": form})
    return render(request, "feedback/index.html", {"form": form, "answers": [], "cards": []})


@sheds_with(busy_form)
@private_page
@require_http_methods(["GET", "HEAD", "POST"])
def feedback_index(request: HtmxHttpRequest) -> HttpResponse:
    """The form (GET) and a submission (POST) share the URL a plain form posts back to."""
    if request.method == "POST":
        return take_submission(request)
    return render_form(request, FeedbackForm())


def take_submission(request: HtmxHttpRequest) -> HttpResponse:
    form = FeedbackForm(request.POST)
    if not form.is_valid():
        return render_form(request, form)
    limit = submission_limit_take(request)
    if limit.exceeded:
        return too_many_submissions(request, form, limit)
    mode = form.cleaned_data["mode"]
    # A first submission's watcher key cycles the session (a write) before the feedback is
    # stored: a busy database then sheds the submission with nothing stored.
    watcher_key(request.session)
    with answers_timed(request.session, mode=mode) as answered:
        feedback = services.feedback_submit(
            **form.cleaned_data,
            # Its email speaks the page's language (a card speaks its reader's).
            language=translation.get_language(),
            time_zone=timezone.get_current_timezone_name(),
        )
    submissions_remember(request.session, feedback_id=feedback.pk)
    token = feedback_token(feedback.pk, session=request.session)
    if not request.htmx:
        url = reverse("feedback:status", kwargs={"token": token})
        return with_server_timing(HttpResponseRedirect(url, status=HTTPStatus.SEE_OTHER), answered)
    csrf_token = get_token(request)  # one for the answer's two forms (each call masks anew)
    context = {
        **feedback_status_context(feedback=feedback),
        "empty_form": empty_form(csrf_token),
        "csrf_token": csrf_token,
        "token": token,
        "mode": mode,
        "SendMode": SendMode,
        "answered": answered,
        "answers": answers_recent(request.session),
    }
    # Without the request: its partials read nothing of it but the CSRF token, given above,
    # so the context processors (the page's socket, CSP, i18n, ...) are not run for them.
    response = HttpResponse(render_to_string(SUBMITTED_PARTIAL, context))
    return with_server_timing(response, answered)


FORM_PARTIAL = "feedback/index.html#form"
SUBMITTED_PARTIAL = "feedback/index.html#submitted"
WATCH_PARTIAL = "feedback/detail.html#watch"
# Stands in for the request's CSRF token in the empty form rendered once (empty_form).
CSRF_STAND_IN = "csrf-token-of-the-request"


def empty_form(csrf_token: str) -> SafeString:
    """The form partial with an empty form, as every submission's answer ends: rendered
    once per language per process; only the CSRF token (`get_token`) is the request's own."""
    html = _empty_form_html(translation.get_language(), get_script_prefix())
    return mark_safe(html.replace(CSRF_STAND_IN, csrf_token))


@lru_cache(maxsize=8)
def _empty_form_html(language: str, script_prefix: str) -> str:
    # The arguments are the cache's key: both are active while it renders.
    return render_to_string(FORM_PARTIAL, {"form": FeedbackForm(), "csrf_token": CSRF_STAND_IN})


def render_form(request: HtmxHttpRequest, form: FeedbackForm) -> HttpResponse:
    if request.htmx:
        return render(request, FORM_PARTIAL, {"form": form})
    context = {
        "form": form,
        "answers": answers_recent(request.session),
        # Each card rendered from its whole context, as the answer to a submission is.
        "cards": [
            render_to_string(WATCH_PARTIAL, card, request)
            for card in feedback_session_cards(session=request.session)
        ],
    }
    return render(request, "feedback/index.html", context)


def too_many_submissions(
    request: HtmxHttpRequest, form: FeedbackForm, limit: SubmissionLimit
) -> HttpResponse:
    """429 and nothing stored; htmx gets its form back, text kept, with the reason."""
    if request.htmx:
        form.add_error(
            None,
            ngettext(
                "You have sent several messages in a short time. Please wait %(seconds)d "
                "second, then send it again: your text is still here.",
                "You have sent several messages in a short time. Please wait %(seconds)d "
                "seconds, then send it again: your text is still here.",
                limit.retry_after,
            )
            % {"seconds": limit.retry_after},
        )
        template, context = "feedback/index.html#form", {"form": form}
    else:
        template, context = "429.html", {"retry_after": limit.retry_after}
    response = render(request, template, context, status=HTTPStatus.TOO_MANY_REQUESTS)
    response["Retry-After"] = str(limit.retry_after)
    return response


@private_page
@require_safe
def feedback_status(request: HtmxHttpRequest, token: str) -> HttpResponse:
    feedback_id = feedback_id_from_token(token, session=request.session)
    if feedback_id is None:
        raise Http404("No such feedback.")  # forged, expired and foreign look the same
    feedback = get_object_or_404(Feedback, pk=feedback_id)
    context = {**feedback_status_context(feedback=feedback), "token": token}
    if request.htmx:
        # At a final state htmx is told to stop polling (the fallback while the socket is down).
        status = HTMX_STOP_POLLING if is_final(feedback.status) else HTTPStatus.OK
        return render(request, "feedback/detail.html#status", context, status=status)
    return render(request, "feedback/detail.html", context)


@private_page
@require_POST
def feedback_cancel(request: HtmxHttpRequest, token: str) -> HttpResponse:
    """Undo (queued) or "Stop trying" (retrying), for the session that submitted only.

    A forged, expired or foreign token gets 404, like the status page, and
    changes nothing. Too late (a worker claimed it, or it is final): 409 with
    the current status, unchanged.
    """
    feedback_id = feedback_id_from_token(token, session=request.session)
    if feedback_id is None:
        raise Http404("No such feedback.")
    cancelled = services.feedback_cancel(feedback_id=feedback_id)
    feedback = cancelled or get_object_or_404(Feedback, pk=feedback_id)
    context = {
        **feedback_status_context(feedback=feedback),
        "token": token,
        "too_late": cancelled is None,
    }
    status = HTTPStatus.OK if cancelled else HTTPStatus.CONFLICT
    template = "feedback/detail.html#status" if request.htmx else "feedback/detail.html"
    return render(request, template, context, status=status)
