from django.urls import path, re_path

from .consumers import NoSuchSocketConsumer, PageConsumer, StatusConsumer

# One socket per page: it sends "watch <kind>/<token>" for each thing it shows.
PAGE_SOCKET_PATH = "ws/watch/"

websocket_urlpatterns = [
    path(PAGE_SOCKET_PATH, PageConsumer.as_asgi(), name="watch"),
    path("ws/<slug:kind>/<str:token>/", StatusConsumer.as_asgi()),
    # Anything else is refused at the handshake (HTTP 403), instead of the
    # router's "No route found" error, which daphne answers with a 500.
    re_path(r"", NoSuchSocketConsumer.as_asgi()),
]
