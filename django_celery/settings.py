"""Settings, read from environment variables (docs/configuration.md lists them).

Defaults serve local development; production is switched on by variables, not code branches.
Timings derive from a few primary ones (docs/failures.md, "Timeouts that must agree").
"""

import hashlib
import ipaddress
import re
import tempfile
import warnings
from pathlib import Path

import dj_database_url
import idna
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP
from django.utils.translation import gettext_lazy as _
from environs import Env
from kombu import Exchange, Queue

from django_celery.redis_prefix import ALLOWED as REDIS_PREFIX_ALLOWED
from django_celery.redis_prefix import checkout_prefix

BASE_DIR = Path(__file__).resolve().parent.parent
env = Env()  # a value that is not of its type stops the start

# --- Django and HTTPS ----------------------------------------------------------
DEBUG = env.bool("DJANGO_DEBUG", True)
if not DEBUG:  # no safe default for these two in production
    for required in ("DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS"):
        if not env.str(required, "").strip():
            raise ImproperlyConfigured(f"{required} must be set when DJANGO_DEBUG=0.")
SECRET_KEY = env.str(
    "DJANGO_SECRET_KEY", "django-insecure-local-development-only-change-me-in-production"
)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
if not DEBUG and "*" in ALLOWED_HOSTS:
    # "*" would also let websockets in from any Origin (AllowedHostsOriginValidator).
    raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS must name the hosts, not '*', in production.")
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", [])
# How many proxies append to X-Forwarded-For before daphne (web/client_address.py).
TRUSTED_PROXY_HOPS = env.int("TRUSTED_PROXY_HOPS", 0)

SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # probes ask over plain HTTP from inside
if env.bool("DJANGO_SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", 0 if DEBUG else 365 * 24 * 60 * 60)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
if SESSION_COOKIE_SECURE:
    # Only this host, over HTTPS, can set a __Host- cookie: no planted session key.
    SESSION_COOKIE_NAME = "__Host-sessionid"
SESSION_COOKIE_HTTPONLY = True
SECURE_REFERRER_POLICY = "same-origin"  # status URLs carry a token
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}
# The form is small; keep deploy/haproxy.cfg's body limit equal to this.
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "realtime",
    "feedback",
    "livetasks",
    "outbox",
    "health",
    "web",
    "workers",
]

MIDDLEWARE = [
    # First, so every response (static files, an early 400) carries the security headers.
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    # Before the early error answers (413, 400), so they speak the person's language.
    "django.middleware.locale.LocaleMiddleware",
    "web.errors.RequestSizeLimitMiddleware",
    "web.errors.RequestEncodingMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Django's, with a busy database (in a view or the session's save) answered 503, not 500.
    "web.shedding.SheddingSessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last and sync-only: under ASGI Django then switches to sync once, here, instead of
    # hopping threads around each middleware above (tests/test_settings.py checks it).
    "web.time_zone.TimeZoneMiddleware",
]

# A session gets a new key once, with its watcher key (feedback/tokens.py, docs/decisions/).
SESSION_ENGINE = "django.contrib.sessions.backends.db"
ROOT_URLCONF = "django_celery.urls"
WSGI_APPLICATION = "django_celery.wsgi.application"
ASGI_APPLICATION = "django_celery.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",
                "django.template.context_processors.i18n",
                "django.template.context_processors.tz",
                "realtime.context_processors.live",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------
# SQLite by default, in WAL mode with IMMEDIATE transactions, so the web
# process and the Celery worker can write at the same time without
# "database is locked" errors. Any DATABASE_URL (e.g. postgres://, with the
# psycopg driver from requirements.txt) overrides.
DATABASES = {
    "default": dj_database_url.parse(
        env.str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=env.int("DATABASE_CONN_MAX_AGE", 0),
    )
}
# PostgreSQL: Django's own connection pool (psycopg_pool), per process. Under
# ASGI every request runs in a new thread, and CONN_MAX_AGE keeps a connection
# per thread: without a pool each request would open one (a few ms, and more
# under load). The pool requires CONN_MAX_AGE=0: a connection goes back to
# the pool at the end of each request or task instead of being closed.
DATABASE_POOL = env.bool("DATABASE_POOL", True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and DATABASE_POOL:
    if DATABASES["default"]["CONN_MAX_AGE"] != 0:
        raise ImproperlyConfigured(
            "DATABASE_CONN_MAX_AGE must be 0 with the connection pool (the pool keeps the "
            "connections); set DATABASE_POOL=0 to use persistent connections instead."
        )
    pool = {
        "min_size": env.int("DATABASE_POOL_MIN_SIZE", 1),
        "max_size": env.int("DATABASE_POOL_MAX_SIZE", 10),
        "timeout": env.float("DATABASE_POOL_TIMEOUT", 10),
    }
    if not 0 <= pool["min_size"] <= pool["max_size"] or pool["max_size"] < 1:
        raise ImproperlyConfigured(
            f"DATABASE_POOL_MIN_SIZE={pool['min_size']} and DATABASE_POOL_MAX_SIZE="
            f"{pool['max_size']}: need 0 <= min <= max and max >= 1."
        )
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = pool
# PostgreSQL: a statement that runs (or waits for a lock) longer than DATABASE_STATEMENT_TIMEOUT
# seconds is cancelled, and its request shed with a 503 (web/shedding.py); 0 (default): no limit.
statement_timeout = env.float("DATABASE_STATEMENT_TIMEOUT", 0.0)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and statement_timeout > 0:
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = (
        f"-c statement_timeout={round(statement_timeout * 1000)}"
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # One writer at a time, and every writer queues for the lock up to DATABASE_BUSY_TIMEOUT
    # seconds (sqlite3's timeout is SQLite's busy timeout): IMMEDIATE takes the write lock at
    # BEGIN, so a transaction never fails upgrading a read to a write, the one "database is
    # locked" no busy timeout waits out. Past the timeout a request is shed with a 503
    # (web/shedding.py), a worker tries again (feedback/delivery.py).
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": env.float("DATABASE_BUSY_TIMEOUT", 5.0),
    }
    # A file, not ":memory:", so test subprocesses (worker, daphne) share it.
    db_name = Path(DATABASES["default"]["NAME"])
    DATABASES["default"]["TEST"] = {"NAME": str(db_name.with_name(f"test-{db_name.name}"))}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Primary timings: everything below that must agree derives from these -------
# Seconds any Redis command may take, for every client (broker, cache, channel layer).
REDIS_TIMEOUT = env.float("REDIS_TIMEOUT", 2)
# The hard time limit of one send: a hung mail server never holds a worker longer.
CELERY_TASK_TIME_LIMIT = env.float("FEEDBACK_TASK_TIME_LIMIT", 60)
# Seconds between two runs of the sweeper (beat).
FEEDBACK_SWEEP_INTERVAL = env.float("FEEDBACK_SWEEP_INTERVAL", 5)
# Seconds between two heartbeats on every open status socket.
REALTIME_HEARTBEAT_SECONDS = env.float("REALTIME_HEARTBEAT_SECONDS", 5)

# --- Derived timings ------------------------------------------------------------
# The soft limit raises inside the task (which retries); the hard one kills the process.
CELERY_TASK_SOFT_TIME_LIMIT = 0.8 * CELERY_TASK_TIME_LIMIT
# A `sending` row unchanged this long belongs to a dead worker: past the hard limit.
FEEDBACK_SENDING_LEASE = CELERY_TASK_TIME_LIMIT + max(2.0, 0.25 * CELERY_TASK_TIME_LIMIT)
# No request waits longer than a Redis command for a pooled broker connection.
FEEDBACK_ENQUEUE_WAIT = REDIS_TIMEOUT
CELERY_BROKER_POOL_ACQUIRE_TIMEOUT = FEEDBACK_ENQUEUE_WAIT
# Seconds of silence after which a page takes its socket for dead: over two heartbeats.
REALTIME_SILENCE_SECONDS = 2.4 * REALTIME_HEARTBEAT_SECONDS
# How often a beat job counts the worker processes (the queue's pace); a count lasts three.
WORKER_CENSUS_SECONDS = 10.0
WORKER_CENSUS_MAX_AGE = 3 * WORKER_CENSUS_SECONDS
# /healthz answers from a report at most this old (one check at a time per process).
HEALTH_CACHE_SECONDS = 1.5

# --- Sending, retries, the sweeper ---------------------------------------------------
# The n-th retry waits half to all of min(BACKOFF * 2**(n-1), BACKOFF_MAX) seconds.
FEEDBACK_MAX_ATTEMPTS = env.int("FEEDBACK_MAX_ATTEMPTS", 5)
FEEDBACK_RETRY_BACKOFF = env.float("FEEDBACK_RETRY_BACKOFF", 5)
FEEDBACK_RETRY_BACKOFF_MAX = env.float("FEEDBACK_RETRY_BACKOFF_MAX", 300)
# A row `queued` (or past its retry time) this long is enqueued again by the sweeper.
FEEDBACK_STUCK_AFTER = env.float("FEEDBACK_STUCK_AFTER", 6 * FEEDBACK_SWEEP_INTERVAL)
# Seconds a node may take to answer Celery's remote control before it counts as dead.
WORKER_PRESENCE_TIMEOUT = env.float("WORKER_PRESENCE_TIMEOUT", 1)
# Seconds of "talking to a slow mail service" before the real send (the tutorial's sleep).
FEEDBACK_SEND_DELAY = env.float("FEEDBACK_SEND_DELAY", 3)
# Rows a second at most for the admin's bulk jobs (resend, export); 0: as fast as they go.
FEEDBACK_JOB_ROWS_PER_SECOND = max(0.0, env.float("FEEDBACK_JOB_ROWS_PER_SECOND", 0))
# Seconds after submitting during which the submitter may undo; 0 switches it off.
FEEDBACK_UNDO_SECONDS = max(0.0, env.float("FEEDBACK_UNDO_SECONDS", 5))
# Seconds a watch token (status page, websocket) stays valid after submitting.
FEEDBACK_TOKEN_MAX_AGE = env.int("FEEDBACK_TOKEN_MAX_AGE", 24 * 60 * 60)
# How many queued feedback the queue-wide event lists (it bounds the event's size).
FEEDBACK_QUEUE_LINE_MAX = env.int("FEEDBACK_QUEUE_LINE_MAX", 100)
# Submissions per client address ("5/m", "100/h", "10/30s"); "off" switches it off.
FEEDBACK_RATE_LIMIT: str | None = env.str("FEEDBACK_RATE_LIMIT", "5/m").strip()
if FEEDBACK_RATE_LIMIT.lower() in {"", "off", "0"}:
    FEEDBACK_RATE_LIMIT = None
elif not re.fullmatch(r"[1-9]\d*/\d*[smhd]", FEEDBACK_RATE_LIMIT):
    raise ImproperlyConfigured(
        f"FEEDBACK_RATE_LIMIT={FEEDBACK_RATE_LIMIT!r}: use a count per period, like 5/m or 100/h."
    )

# --- Live tasks (livetasks/, docs/live-tasks.md) ----------------------------------------
# A finished task's output (and its row) is deleted this long after it ended; its watch and
# download links last as long.
LIVETASKS_KEEP_SECONDS = env.int("LIVETASKS_KEEP_SECONDS", 24 * 60 * 60)
# A running task that reported no progress for this long is taken for a dead worker's; one
# waiting this long is sent again. Checked every LIVETASKS_SWEEP_INTERVAL seconds (beat).
LIVETASKS_LEASE = env.float("LIVETASKS_LEASE", 60)
LIVETASKS_SWEEP_INTERVAL = env.float("LIVETASKS_SWEEP_INTERVAL", 10)
# Where outputs are kept: shared by the web and the workers (a shared volume in production).
LIVETASKS_OUTPUT_DIR = Path(
    env.str("LIVETASKS_OUTPUT_DIR", "").strip() or BASE_DIR / "var" / "livetasks"
)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "livetasks": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": LIVETASKS_OUTPUT_DIR},
    },
}

# --- Redis and Celery ------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", "redis://127.0.0.1:6379/0")
# Before every key, queue and channel, so stacks sharing one Redis keep apart.
REDIS_PREFIX = env.str("REDIS_PREFIX", "").strip() or (
    checkout_prefix(BASE_DIR) if DEBUG else "feedback"
)
if not REDIS_PREFIX_ALLOWED.fullmatch(REDIS_PREFIX):
    raise ImproperlyConfigured(
        f"REDIS_PREFIX={REDIS_PREFIX!r}: use letters, digits, '.', '_' and '-' only."
    )

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_TASK_IGNORE_RESULT = True
# One result backend for all threads: daphne runs each request in a new thread.
CELERY_RESULT_BACKEND_THREAD_SAFE = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# django_celery/celery.py closes connections around each task, as Django does per request.
CELERY_DB_REUSE_MAX = 1000
# Nothing lost when a worker dies (the claim on the row keeps a rerun from mailing twice).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# A message prefetched by a worker that dies waits out the visibility timeout: take one.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A waiting retry is an unacknowledged message: redelivered only past the longest wait.
CELERY_VISIBILITY_TIMEOUT = int(
    2 * (FEEDBACK_RETRY_BACKOFF_MAX + CELERY_TASK_TIME_LIMIT) + FEEDBACK_STUCK_AFTER
)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "global_keyprefix": f"{REDIS_PREFIX}:",
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
    "socket_connect_timeout": REDIS_TIMEOUT,
    "socket_timeout": REDIS_TIMEOUT,
}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {
    "global_keyprefix": f"{REDIS_PREFIX}:",
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
}
# With Redis down, one quick retry: the row stays `queued` for the sweeper.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0.2,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
# The sweeper's take-back has a queue of its own, so a backlog of sends never delays it.
CELERY_TASK_DEFAULT_QUEUE = "celery"
FEEDBACK_SWEEP_QUEUE = "feedback-sweeps"
CELERY_TASK_QUEUES = (
    Queue(CELERY_TASK_DEFAULT_QUEUE, Exchange(CELERY_TASK_DEFAULT_QUEUE),
          routing_key=CELERY_TASK_DEFAULT_QUEUE),
    Queue(FEEDBACK_SWEEP_QUEUE, Exchange(FEEDBACK_SWEEP_QUEUE), routing_key=FEEDBACK_SWEEP_QUEUE),
)  # fmt: skip


def every(seconds: float, task: str, **options) -> dict:
    """A beat job; a run that could not start in time is replaced by the next one."""
    return {"task": task, "schedule": seconds, "options": {"expires": seconds, **options}}


CELERY_BEAT_SCHEDULE = {
    "feedback-requeue-stuck": every(
        FEEDBACK_SWEEP_INTERVAL, "feedback.tasks.requeue_stuck_feedback"
    ),
    "feedback-take-back-abandoned": every(
        FEEDBACK_SWEEP_INTERVAL, "feedback.tasks.take_back_abandoned_feedback",
        queue=FEEDBACK_SWEEP_QUEUE,
    ),
    "workers-census": every(
        WORKER_CENSUS_SECONDS, "workers.tasks.take_workers_census", queue=FEEDBACK_SWEEP_QUEUE
    ),
    "sessions-clear-expired": every(300.0, "web.tasks.sessions_clear_expired"),
    "livetasks-sweep": every(
        LIVETASKS_SWEEP_INTERVAL, "livetasks.tasks.sweep_live_tasks", queue=FEEDBACK_SWEEP_QUEUE
    ),
}  # fmt: skip
CELERY_BEAT_SCHEDULE_FILENAME = env.str(
    "CELERY_BEAT_SCHEDULE_FILENAME",
    str(
        Path(tempfile.gettempdir())
        / f"feedback-celerybeat-{BASE_DIR.name}-{hashlib.sha256(bytes(BASE_DIR)).hexdigest()[:8]}"
    ),
)

# --- Channel layer and cache -------------------------------------------------------
CHANNEL_LAYER_BACKENDS = {
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
    "core": "channels_redis.core.RedisChannelLayer",
}
CHANNEL_LAYER = env.str("CHANNEL_LAYER", "pubsub").strip().lower() or "pubsub"
if CHANNEL_LAYER not in CHANNEL_LAYER_BACKENDS:
    raise ImproperlyConfigured(
        f"CHANNEL_LAYER must be one of {', '.join(CHANNEL_LAYER_BACKENDS)}, not {CHANNEL_LAYER!r}."
    )
CHANNEL_LAYER_HOST = {"address": REDIS_URL, "socket_connect_timeout": REDIS_TIMEOUT}
if CHANNEL_LAYER == "core":
    # Its reads wait for a 5 s blocking pop (brpop_timeout): give them room past it.
    CHANNEL_LAYER_HOST["socket_timeout"] = 2 * 5 + REDIS_TIMEOUT
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": CHANNEL_LAYER_BACKENDS[CHANNEL_LAYER],
        "CONFIG": {"hosts": [CHANNEL_LAYER_HOST], "prefix": f"{REDIS_PREFIX}:asgi:"},
    }
}
CACHES = {
    "default": {
        # Per-process pools; get_redis_connection() is the app's one way to Redis itself.
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": REDIS_PREFIX,
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": REDIS_TIMEOUT, "SOCKET_TIMEOUT": REDIS_TIMEOUT},
    }
}

# --- Live status (websockets) -------------------------------------------------------
# Seconds between a watcher's re-reads of its row (the layer delivers at most once),
# and all re-reads of one daphne process per second at most.
REALTIME_RESYNC_SECONDS = env.float("REALTIME_RESYNC_SECONDS", REALTIME_HEARTBEAT_SECONDS)
REALTIME_RESYNC_PER_SECOND = env.float("REALTIME_RESYNC_PER_SECOND", 50)
# A watcher's mark (realtime/watchers.py) lasts this long, and is made again at each re-read.
REALTIME_WATCHED_SECONDS = 3600.0
REALTIME_WATCHES_PER_SOCKET = env.int("REALTIME_WATCHES_PER_SOCKET", 50)
# Over these a socket is closed with 4429 and the page polls (realtime/socket_limits.py).
REALTIME_MAX_SOCKETS_PER_SESSION = env.int("REALTIME_MAX_SOCKETS_PER_SESSION", 20)
REALTIME_MAX_SOCKETS_PER_CLIENT = env.int("REALTIME_MAX_SOCKETS_PER_CLIENT", 200)
REALTIME_CONNECTS_PER_SECOND = env.float("REALTIME_CONNECTS_PER_SECOND", 10)

# --- Email ---------------------------------------------------------------------------
email_host = env.str("EMAIL_HOST", "")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", "Feedback <feedback@localhost>")
if email_host or not DEBUG:
    MAILERS = {
        "default": {
            "BACKEND": "feedback.smtp.EmailBackend",
            "OPTIONS": {
                "host": email_host or "localhost",
                "port": env.int("EMAIL_PORT", 25),
                "username": env.str("EMAIL_HOST_USER", ""),
                "password": env.str("EMAIL_HOST_PASSWORD", ""),
                "use_tls": env.bool("EMAIL_USE_TLS", False),
                "timeout": env.float("EMAIL_TIMEOUT", 10),
            },
        }
    }
else:  # debug without a mail server: the worker's log prints each email
    MAILERS = {"default": {"BACKEND": "django.core.mail.backends.console.EmailBackend"}}


def _idna(domain: str) -> str:
    if domain.isascii():
        return domain
    return idna.encode(domain, uts46=True, transitional=False).decode("ascii")


def _helo_default(hosts: list[str]) -> str:
    """The first allowed host that names one machine; an IP in the address literal form."""
    for host in hosts:
        name = host.strip("[]")
        if not name or "*" in name or name.startswith("."):
            continue
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            return name
        return f"[IPv6:{address}]" if address.version == 6 else f"[{address}]"
    return DEFAULT_FROM_EMAIL.strip().rstrip(">").rpartition("@")[2].strip() or "localhost"


# Real servers check the EHLO name; both names in ASCII (IDNA 2008).
EMAIL_HELO_NAME = _idna(env.str("EMAIL_HELO_NAME", "").strip() or _helo_default(ALLOWED_HOSTS))
EMAIL_MESSAGE_ID_DOMAIN = _idna(env.str("EMAIL_MESSAGE_ID_DOMAIN", "").strip())
# `make run`'s local SMTP server stores mail here; the debug-only Outbox page reads it.
DEV_MAILBOX = Path(env.str("DEV_MAILBOX", "").strip() or BASE_DIR / "var" / "mailbox.jsonl")
DEV_MAILBOX_IN_USE = DEBUG and env.bool("DEV_MAILBOX_IN_USE", False)

# --- Static files, languages, logging --------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
WHITENOISE_USE_FINDERS = True  # no collectstatic step needed
warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("pt-br", _("Brazilian Portuguese"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
FORMAT_MODULE_PATH = ["django_celery.formats"]  # times with seconds, per language
TIME_ZONE = "UTC"  # shown in the person's zone when the page knows it (web/time_zone.py)
USE_I18N = True
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Watch tokens never reach a log line (web/log_redaction.py).
    "formatters": {
        "plain": {
            "()": "web.log_redaction.RedactingFormatter",
            "fmt": "%(levelname)s %(name)s: %(message)s",
        }
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    # A request shed under overload logs one warning line (web/shedding.py), not Django's too.
    "filters": {
        "not_shed": {
            "()": "django.utils.log.CallbackFilter",
            "callback": "ext://web.shedding.not_shed",
        }
    },
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {
        "django": {"level": env.str("DJANGO_LOG_LEVEL", "INFO")},
        "django.request": {"filters": ["not_shed"]},
    },
}
