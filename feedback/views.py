from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_http_methods, require_safe
from django_htmx.middleware import HtmxDetails

from . import services
from .answers import answers_recent, answers_record, server_timing, stopwatch
from .forms import FeedbackForm
from .limits import SubmissionLimit, submission_limit_take
from .models import Feedback
from .tokens import feedback_id_from_token, feedback_token


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


TOO_MANY_REQUESTS = 429


# The pages that show a person's submission are for that browser only.
private_page = cache_control(private=True, no_store=True)


@private_page
@require_http_methods(["GET", "HEAD", "POST"])
def feedback_index(request: HtmxHttpRequest) -> HttpResponse:
    form = FeedbackForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        limit = submission_limit_take(request)
        if limit.exceeded:
            return too_many_submissions(request, form, limit)
        mode = form.cleaned_data["mode"]
        with stopwatch() as answered:
            feedback = services.feedback_submit(**form.cleaned_data)
        answers_record(request.session, mode=mode, ms=answered.ms)
        request.session.cycle_key()  # watch rights go to this session: a planted key loses them
        token = feedback_token(feedback.pk, session=request.session)
        if request.htmx:
            context = {
                "form": FeedbackForm(),
                "feedback": feedback,
                "token": token,
                "mode": mode,
                "answered": answered,
                "answers": answers_recent(request.session),
            }
            response = render(request, "feedback/index.html#submitted", context)
        else:
            url = reverse("feedback:status", kwargs={"token": token})
            response = HttpResponseRedirect(url, status=303)
        response["Server-Timing"] = server_timing(answered.ms)
        return response
    template = "feedback/index.html#form" if request.htmx else "feedback/index.html"
    return render(request, template, {"form": form, "answers": answers_recent(request.session)})


def too_many_submissions(
    request: HtmxHttpRequest, form: FeedbackForm, limit: SubmissionLimit
) -> HttpResponse:
    """429 and nothing stored; htmx gets its form back, text kept, with the reason."""
    if request.htmx:
        form.add_error(
            None,
            "You have sent several messages in a short time. Please wait "
            f"{limit.retry_after} s, then send it again: your text is still here.",
        )
        template, context = "feedback/index.html#form", {"form": form}
    else:
        template, context = "429.html", {"retry_after": limit.retry_after}
    response = render(request, template, context, status=TOO_MANY_REQUESTS)
    response["Retry-After"] = str(limit.retry_after)
    return response


@private_page
@require_safe
def feedback_status(request: HtmxHttpRequest, token: str) -> HttpResponse:
    feedback_id = feedback_id_from_token(token, session=request.session)
    if feedback_id is None:
        raise Http404("No such feedback.")  # forged, expired and foreign look the same
    feedback = get_object_or_404(Feedback, pk=feedback_id)
    context = {"feedback": feedback, "token": token}
    if request.htmx:
        # 286 at a final state: htmx stops polling (the fallback while the socket is down).
        status = 286 if feedback.is_final else 200
        return render(request, "feedback/detail.html#status", context, status=status)
    return render(request, "feedback/detail.html", context)
