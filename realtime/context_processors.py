from django.conf import settings
from django.http import HttpRequest


def live(request: HttpRequest) -> dict[str, object]:
    """Where a page opens its one status socket, and when it takes it for dead
    (read by static/js/live.js from the live indicator's data attributes)."""
    return {
        "live_socket_path": "/ws/watch/",
        "live_silence_ms": round(settings.REALTIME_SILENCE_SECONDS * 1000),
    }
