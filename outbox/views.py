from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET

from outbox.mailbox import read_mails


@cache_control(private=True, no_store=True)  # people's messages
@require_GET
def outbox_index(request: HttpRequest) -> HttpResponse:
    path = settings.DEV_MAILBOX
    return render(request, "outbox/index.html", {"mails": read_mails(path), "path": path})
