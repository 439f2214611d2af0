import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_celery.settings")
# Django must be set up before anything imports models (the consumers do).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.sessions import SessionMiddlewareStack  # noqa: E402

from realtime.origin import SameOriginValidator  # noqa: E402
from realtime.routing import websocket_urlpatterns  # noqa: E402
from realtime.socket_limits import SocketLimits  # noqa: E402
from web.client_address import scope_client_address  # noqa: E402

# Request sizes and slow clients are bounded by HAProxy in front (deploy/haproxy.cfg).
application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": SameOriginValidator(
            # Caps and connect rate first: a refused socket costs no session
            # lookup and no trip to the database thread.
            SocketLimits(
                # The session only: watchers are not users, and resolving scope["user"]
                # cost every socket an extra trip to the database thread.
                SessionMiddlewareStack(URLRouter(websocket_urlpatterns)),
                client_address=scope_client_address,
            )
        ),
    }
)

# Everything loaded so far lives as long as the process: out of the collector's
# sight, a full collection no longer walks it (in-process A/B of htmx POSTs on
# PostgreSQL, with short-lived objects standing in for sockets: a full
# collection ~100 ms of CPU before, ~20 ms after; as often).
gc.freeze()
