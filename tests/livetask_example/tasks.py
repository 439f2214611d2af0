import time

from django.shortcuts import redirect
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from livetasks import TaskContext, live_task, page_url


@live_task(cancellable=True)
def count_to(context: TaskContext, n: int) -> None:
    for number in range(n):
        context.progress(done=number, total=n, step=_("Counting"))
        time.sleep(0.5)


@require_POST
def start_counting(request):
    result = count_to.enqueue(20, owner=request)
    return redirect(page_url(result, request))
