from django.conf import settings
from django.http import HttpRequest

from .consumers import CLOSE_FORBIDDEN, CLOSE_SESSION_CHANGED, HEARTBEAT, REFUSED, WATCH_COMMAND
from .routing import PAGE_SOCKET_PATH
from .socket_limits import CLOSE_TOO_MANY


def live(request: HttpRequest) -> dict[str, object]:
    """The page's one status socket as static/js/live.js speaks it (from the data
    attributes of templates/realtime/live.html): where it opens, its words and close
    codes, and when it is taken for dead."""
    return {
        "live": {
            "path": f"/{PAGE_SOCKET_PATH}",
            "silence_ms": round(settings.REALTIME_SILENCE_SECONDS * 1000),
            "watch": WATCH_COMMAND,
            "heartbeat": HEARTBEAT,
            "refused": REFUSED,
            # Closes that mean "do not come back": refused, or over the socket caps.
            "turned_away": f"{CLOSE_FORBIDDEN} {CLOSE_TOO_MANY}",
            "session_changed": CLOSE_SESSION_CHANGED,
        }
    }
