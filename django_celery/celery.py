import gc
import os

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_process_init, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_celery.settings")

app = Celery("django_celery")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# Celery's Django fixup closes the database before and after every task and,
# with Django's pool in a prefork child, the whole pool: each task connected
# anew (PostgreSQL's connect, the pool's threads: a tenth of the worker's CPU
# per email). CELERY_DB_REUSE_MAX in settings leaves that to every Nth task;
# around each task the connections are instead treated as Django treats them
# around a request: one that is unusable (after an error) or past
# CONN_MAX_AGE is closed, which with the pool gives it back to the pool.
@task_prerun.connect
@task_postrun.connect
def close_old_database_connections(**kwargs) -> None:
    from django.db import close_old_connections

    close_old_connections()


# The app is loaded (a prefork child, or the worker's main process): what is
# there now lives as long as the process, and a full collection need not walk
# it again (django_celery/asgi.py does the same in daphne).
@worker_process_init.connect
@worker_ready.connect
def freeze_loaded_objects(**kwargs) -> None:
    gc.freeze()
