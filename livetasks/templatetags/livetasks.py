from django import template
from django.template.loader import render_to_string
from django.utils.safestring import SafeString

from ..models import LiveTaskResult
from ..selectors import CARD, result_card_context, result_for, result_token

register = template.Library()


@register.simple_tag(takes_context=True)
def live_task_card(context: template.Context, result: LiveTaskResult) -> SafeString | str:
    """The task's live card, for its owner only (anyone else gets nothing: no token is
    made for a browser that may not watch it)."""
    request = context["request"]
    if result_for(request.session, result.pk) is None:
        return ""
    token = result_token(result, session=request.session)
    return render_to_string(
        CARD, {**result_card_context(result=result), "token": token}, request=request
    )
