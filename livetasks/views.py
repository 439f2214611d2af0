from http import HTTPStatus

from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_POST, require_safe
from django_htmx.http import HTMX_STOP_POLLING

from . import services
from .api import output_storage
from .models import LiveTaskResult
from .selectors import CARD, STATUS_PARTIAL, result_card_context, result_for_token

# A task's pages are for its owner's browser only.
private_page = cache_control(private=True, no_store=True)


def owned(request: HttpRequest, token: str) -> LiveTaskResult:
    result = result_for_token(token, session=request.session)
    if result is None:
        raise Http404("No such task.")  # forged, expired, gone and foreign look the same
    return result


@private_page
@require_safe
def task_card(request: HttpRequest, token: str) -> HttpResponse:
    """The card: its status partial for htmx's poll (286 once final), else a page."""
    result = owned(request, token)
    context = {**result_card_context(result=result), "token": token}
    if request.htmx:
        status = HTMX_STOP_POLLING if result.is_finished else HTTPStatus.OK
        return render(request, STATUS_PARTIAL, context, status=status)
    return render(request, "livetasks/page.html", {**context, "card": CARD})


@private_page
@require_POST
def task_cancel(request: HttpRequest, token: str) -> HttpResponse:
    """409 with the current card when it is too late (finished, or not cancellable)."""
    result = owned(request, token)
    cancelled = services.result_cancel(result.pk)
    if not request.htmx:
        return redirect("livetasks:card", token=token)
    context = result_card_context(result=cancelled or result)
    status = HTTPStatus.OK if cancelled else HTTPStatus.CONFLICT
    return render(request, STATUS_PARTIAL, context, status=status)


@private_page
@require_safe
def task_download(request: HttpRequest, token: str) -> FileResponse:
    result = owned(request, token)
    storage = output_storage()
    if not result.has_output or not storage.exists(result.output_path):
        raise Http404("No such file.")
    return FileResponse(
        storage.open(result.output_path),
        as_attachment=True,
        filename=result.output_name,
        content_type=result.output_content_type or None,
    )
