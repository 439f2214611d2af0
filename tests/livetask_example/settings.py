"""The project's settings with the docs' example installed: only for the tests that run it
(its worker and daphne get DJANGO_SETTINGS_MODULE=tests.livetask_example.settings)."""

from django_celery.settings import *  # noqa: F403
from django_celery.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.livetask_example"]
ROOT_URLCONF = "tests.livetask_example.urls"
