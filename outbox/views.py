from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET

from outbox.mailbox import read_mails


@cache_control(private=True, no_store=True)  # people's messages
@require_GET
def outbox_index(request: HttpRequest) -> HttpResponse:
    path = settings.DEV_MAILBOX
    return render(request, "outbox/index.html", {"mails": read_mails(path), "path": path})


# The HTML part is shown as its own page, sandboxed: no script runs, nothing
# is fetched (no remote image, font or style), only its inline styles apply.
HTML_PART_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"


@require_GET
def outbox_html(request: HttpRequest, anchor: str) -> HttpResponse:
    """The HTML version of one received email, as a mail client would show it."""
    mail = next((m for m in read_mails(settings.DEV_MAILBOX) if m.anchor == anchor), None)
    if mail is None or not mail.html:
        raise Http404("No such email, or it has no HTML version.")
    response = HttpResponse(mail.html, content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = HTML_PART_CSP
    return response
