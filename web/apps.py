from django.apps import AppConfig


class WebConfig(AppConfig):
    """The HTTP edge: who is asking, error answers, the person's time zone, logs, sessions."""

    name = "web"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
