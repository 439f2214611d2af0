"""The person's time zone, from a cookie their browser sets (static/js/locale.js).

The cookie holds an IANA name (`Intl.DateTimeFormat().resolvedOptions().timeZone`);
anything zoneinfo does not know is ignored and times stay in UTC.
"""

import functools
import zoneinfo
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

COOKIE = "tz"


def time_zone_name(value: str | None) -> str:
    """The zone's IANA name if zoneinfo knows it, else "" (UTC)."""
    return value if value in known_time_zones() else ""


@functools.cache
def known_time_zones() -> frozenset[str]:
    # The names zoneinfo lists, never a path.
    return frozenset(zoneinfo.available_timezones())


class TimeZoneMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        name = time_zone_name(request.COOKIES.get(COOKIE))
        if name:
            timezone.activate(zoneinfo.ZoneInfo(name))
        else:
            timezone.deactivate()
        return self.get_response(request)
