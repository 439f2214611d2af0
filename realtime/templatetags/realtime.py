from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()


@register.simple_tag
def watched(kind: str, token: str, poll_url: str, final: bool) -> SafeString:
    """The attributes that make an element a watched card, for any kind of token.

    The page's one socket (static/js/live.js) watches it by data-watch="<kind>/<token>";
    while the socket is down, and until a final state, htmx polls `poll_url` every 2 s into
    the card's ".status" (static/js/status-fallback.js lets a poll out only then; the server
    answers 286 at a final state). The status partial inside carries its stable id,
    data-version and data-final.
    """
    attributes = format_html('data-watch="{}/{}"', kind, token)
    if final:
        return attributes
    return attributes + format_html(
        ' hx-get="{}" hx-trigger="every 2s, live:refresh" hx-target="find .status"'
        ' hx-swap="outerHTML" data-poll-status="when-socket-down"',
        poll_url,
    )
