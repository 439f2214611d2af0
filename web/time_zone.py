"""The person's time zone, from a cookie their browser sets (static/js/locale.js).

The cookie holds an IANA name (`Intl.DateTimeFormat().resolvedOptions().timeZone`);
anything zoneinfo does not know is ignored and times stay in UTC.
"""

import functools
import re
import zoneinfo
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

COOKIE = "tz"


# An IANA zone name: letters, digits, "_", "+", "-" in "/"-separated parts. No dot,
# so never a path out of the zone database ("..", "/etc/...", a leading "/").
_ZONE_NAME = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+){0,3}")


@functools.lru_cache(maxsize=1024)  # bounded: a cookie is the browser's to send
def time_zone_name(value: str | None) -> str:
    """The zone's IANA name if zoneinfo has it, else "" (UTC).

    Checked by loading that one zone: `zoneinfo.available_timezones()` reads
    every file of the zone database, about a second of CPU, which the first
    request of each process paid (docs/profile.md).
    """
    if not value or len(value) > 64 or not _ZONE_NAME.fullmatch(value):
        return ""
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return ""  # not a zone (or a directory of them, such as "America")
    return value


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
