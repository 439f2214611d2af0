"""The tutorial's shape, the bench's baseline: a form view queues a Celery task that calls
``send_mail`` and redirects to a success page; Celery's Redis result backend is on.

Run by the bench as the app is (``BenchStack(app="devtools.bench.baseline")``): the same
daphne, a prefork worker of 2, its own Redis, the same SMTP sink, DEBUG off.
"""

from .celery import app as celery_app

__all__ = ("celery_app",)
