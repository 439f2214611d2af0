from django.urls import path

from .consumers import StatusConsumer

websocket_urlpatterns = [
    path("ws/<slug:kind>/<str:token>/", StatusConsumer.as_asgi()),
]
