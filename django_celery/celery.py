import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_celery.settings")

app = Celery("django_celery")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Each worker node's heartbeat, so the sweeper notices a dead node in seconds.
from django_celery import worker_liveness  # noqa: E402, F401
