import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_celery.settings")
# Django must be set up before anything imports models (the consumers do).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.sessions import SessionMiddlewareStack  # noqa: E402
from django.conf import settings  # noqa: E402

from django_celery.body_limit import (  # noqa: E402
    BodySizeLimitMiddleware,
    limit_daphne_request_bodies,
)
from django_celery.client_address import scope_client_address  # noqa: E402
from django_celery.log_redaction import redact_daphne_access_log  # noqa: E402
from django_celery.slow_clients import limit_daphne_header_time  # noqa: E402
from realtime.origin import SameOriginValidator  # noqa: E402
from realtime.routing import websocket_urlpatterns  # noqa: E402
from realtime.socket_limits import SocketLimits  # noqa: E402

# daphne writes its access log (every URL, tokens included) outside logging.
redact_daphne_access_log()
# A big body is dropped as it arrives, never held whole (django_celery/body_limit.py).
limit_daphne_request_bodies(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
# A client that trickles its headers is dropped (django_celery/slow_clients.py).
limit_daphne_header_time(settings.HTTP_HEADER_TIMEOUT)

application = ProtocolTypeRouter(
    {
        "http": BodySizeLimitMiddleware(
            django_asgi_app, limit=lambda: settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        ),
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
