from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from .checks import health_report


@never_cache
@require_safe  # HEAD too: monitors that use it must not see the site down
def healthz(request: HttpRequest) -> JsonResponse:
    healthy, report = health_report()
    return JsonResponse(report, status=200 if healthy else 503)
