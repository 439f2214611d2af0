from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.middleware import HtmxDetails

from . import services
from .answers import answers_recent, answers_record, server_timing, stopwatch
from .forms import FeedbackForm
from .models import Feedback
from .tokens import feedback_id_from_token, feedback_token


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


@require_http_methods(["GET", "POST"])
def feedback_index(request: HtmxHttpRequest) -> HttpResponse:
    form = FeedbackForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        mode = form.cleaned_data["mode"]
        with stopwatch() as answered:
            feedback = services.feedback_submit(**form.cleaned_data)
        answers_record(request.session, mode=mode, ms=answered.ms)
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


@require_GET
def feedback_status(request: HtmxHttpRequest, token: str) -> HttpResponse:
    feedback_id = feedback_id_from_token(token, session=request.session)
    if feedback_id is None:
        raise Http404("No such feedback.")  # forged, expired and foreign look the same
    feedback = get_object_or_404(Feedback, pk=feedback_id)
    context = {"feedback": feedback, "token": token}
    template = "feedback/detail.html#status" if request.htmx else "feedback/detail.html"
    return render(request, template, context)
