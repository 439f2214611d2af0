import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_celery.settings")

app = Celery("django_celery")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def keep_database_connections(**kwargs) -> None:
    """Pool processes keep their database connection between tasks.

    settings.DATABASES closes it after each use (CONN_MAX_AGE=0), as Django
    advises under ASGI, where daphne runs every request in a thread of its own.
    A pool process is not that: one thread, one task after another, so reopening
    the connection for every task was pure cost (docs/benchmarks.md: the drain
    rate nearly doubled with the connection kept).
    """
    from django.conf import settings
    from django.db import connections

    for alias in settings.DATABASES:
        connections[alias].settings_dict["CONN_MAX_AGE"] = settings.WORKER_DATABASE_CONN_MAX_AGE
