from django.apps import AppConfig


class WorkersConfig(AppConfig):
    """Which Celery worker nodes live and how many processes each runs."""

    name = "workers"

    def ready(self) -> None:
        from . import presence  # noqa: F401  (its signal and remote control command)
