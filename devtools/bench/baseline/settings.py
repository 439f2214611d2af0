"""Django's startproject defaults, with what the bench's stack gives it from the environment."""

import os

SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes",
                  "django.contrib.sessions", "django.contrib.messages"]  # fmt: skip
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "devtools.bench.baseline.views"
PAGE = "<!doctype html><html><head><title>Feedback</title></head><body>{}</body></html>"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "OPTIONS": {
        "context_processors": ["django.template.context_processors.request",
                               "django.contrib.auth.context_processors.auth",
                               "django.contrib.messages.context_processors.messages"],
        "loaders": [("django.template.loaders.locmem.Loader", {
            "feedback.html": PAGE.format('<form method="post">{% csrf_token %}{{ form.as_p }}'
                                         '<button type="submit">Send</button></form>'),
            "success.html": PAGE.format("<p>Thank you! We sent you a confirmation email.</p>"),
        })],
    },
}]  # fmt: skip
DATABASE = os.environ["DATABASE_URL"].removeprefix("sqlite:///")  # the stack's, never written
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": DATABASE}}
EMAIL_HOST, EMAIL_PORT = os.environ["EMAIL_HOST"], int(os.environ["EMAIL_PORT"])
CELERY_BROKER_URL = os.environ["REDIS_URL"]
CELERY_RESULT_BACKEND = os.environ["REDIS_URL"]
USE_TZ = True
