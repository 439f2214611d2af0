"""Settings for the whole project, read from environment variables.

Defaults serve local development; production is switched on by variables
(see the README's "Configuration" section), not by code branches.
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

# Every variable is parsed by environs: a value that is not of its type stops the start.
env = Env()

DEBUG = env.bool("DJANGO_DEBUG", True)

# In production (debug off) there is no safe default for these two: refuse to
# start rather than run with a published key or accept any Host header.
if not DEBUG:
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

# --- HTTPS and browser hardening ---------------------------------------------
# On by default in production, each switchable by its variable (e.g. off
# behind a proxy that already redirects to HTTPS). See the README's "Deploying".
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
# Health probes (load balancers, orchestrators) often ask over plain HTTP from inside.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
if env.bool("DJANGO_SECURE_PROXY_SSL_HEADER", False):
    # Only behind a proxy that sets (and strips from clients) X-Forwarded-Proto.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", 0 if DEBUG else 365 * 24 * 60 * 60)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
if SESSION_COOKIE_SECURE:
    # A __Host- cookie is only ever set by this host over HTTPS: no sibling subdomain and
    # no plain-HTTP page can plant a session key (docs/decisions/, session rotation).
    SESSION_COOKIE_NAME = "__Host-sessionid"
SESSION_COOKIE_HTTPONLY = True
SECURE_REFERRER_POLICY = "same-origin"  # status URLs carry a token: never send them elsewhere
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Django 6's built-in Content-Security-Policy: scripts only from our own
# static files (htmx too), no inline script or style, websockets only back to us.
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
# The form is small: anything bigger is refused with 413 before it is parsed. In
# production HAProxy refuses it before daphne reads it, and drops a client whose
# headers are slow (deploy/haproxy.cfg: keep its limit equal to this one).
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
    "outbox",
    "health",
    "web",
    "workers",
]

MIDDLEWARE = [
    # Outermost, so that every response carries the security headers: static
    # files (WhiteNoise answers them itself) and early errors (a bad Host: 400) too.
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    # Before the early error answers (413, 400), so they speak the person's language
    # too; it reads the language cookie and Accept-Language, not the session.
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
    # Last, and sync-only on purpose: under ASGI Django switches from async to sync once, at
    # the innermost sync-only middleware, and runs everything above it in the request's one
    # thread. Below a sync-only one in the middle, Django's own middleware would run in async
    # mode: one thread hop per process_request and process_response, about ten a request.
    # tests/test_settings.py checks that the chain is adapted here only.
    "web.time_zone.TimeZoneMiddleware",
]

# Django's database sessions. A session gets a new key once, with its watcher key
# (feedback/tokens.py), not at every submission (docs/decisions/).
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

# --- Redis: broker, results, channel layer, cache -------------------------
REDIS_URL = env.str("REDIS_URL", "redis://127.0.0.1:6379/0")
# Seconds any Redis command may take, for every client of the stack (broker, cache,
# channel layer): a Redis that accepts connections but never answers must not hang a
# web request that enqueues (nor a worker) for ever.
REDIS_TIMEOUT = env.float("REDIS_TIMEOUT", 2)


# Every key, queue and pub/sub channel of this stack in Redis starts with this,
# so two checkouts (or another project) on one Redis never take each other's
# tasks or pushes. In development each checkout has its own; in production
# every web and worker node must share one (set REDIS_PREFIX on all of them).
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
# One result backend for all threads (redis-py's pool is thread-safe). Celery's
# default builds one per thread, and daphne runs each request in a new thread:
# every enqueue built a backend anew (docs/benchmarks-notes.md, the submit profile).
CELERY_RESULT_BACKEND_THREAD_SAFE = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's Django fixup closes every database connection (and Django's pool) around
# each task unless this is set; then only every this-many tasks. django_celery/celery.py
# closes them around each task the way Django does around a request instead.
CELERY_DB_REUSE_MAX = 1000

# Nothing lost when a worker dies: a task is acknowledged only once it has run
# (acks_late), and a task whose pool process was killed goes back to the queue
# (reject_on_worker_lost). The send itself is guarded by a claim on the row, so
# a task that runs twice never mails twice (see feedback.services).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Take one message at a time: a late-acked message prefetched by a worker that
# dies waits for the visibility timeout before anyone else may run it.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A hung mail server never holds a worker: the soft limit raises inside the
# task (which then retries), the hard limit kills the pool process. Celery
# acknowledges a task that hit its hard limit (acks_on_timeout, on by default):
# it is not delivered again, and FEEDBACK_SENDING_LEASE and the sweeper take its
# row back. Both must leave room for FEEDBACK_SEND_DELAY plus one SMTP exchange
# (EMAIL_TIMEOUT per network operation).
CELERY_TASK_TIME_LIMIT = env.float("FEEDBACK_TASK_TIME_LIMIT", 60)
CELERY_TASK_SOFT_TIME_LIMIT = 0.8 * CELERY_TASK_TIME_LIMIT

# --- Retries and recovery of the confirmation email ---------------------------
# Transient failures (4xx replies, refused or dropped connections, timeouts)
# are retried with exponential backoff and jitter: the n-th retry waits
# between half and all of min(BACKOFF * 2**(n-1), BACKOFF_MAX) seconds.
FEEDBACK_MAX_ATTEMPTS = env.int("FEEDBACK_MAX_ATTEMPTS", 5)
FEEDBACK_RETRY_BACKOFF = env.float("FEEDBACK_RETRY_BACKOFF", 5)
FEEDBACK_RETRY_BACKOFF_MAX = env.float("FEEDBACK_RETRY_BACKOFF_MAX", 300)
# A row in `sending` that has not changed for this long belongs to a dead
# worker (the hard time limit would have ended a live one): it may be claimed
# again. Above CELERY_TASK_TIME_LIMIT, or a slow send could run twice (a system check).
FEEDBACK_SENDING_LEASE = env.float(
    "FEEDBACK_SENDING_LEASE", CELERY_TASK_TIME_LIMIT + max(2.0, 0.25 * CELERY_TASK_TIME_LIMIT)
)
# The sweeper (a beat job) re-enqueues feedback that nothing will pick up by
# itself: `queued` for longer than STUCK_AFTER (e.g. Redis was down when it was
# submitted), `retrying` past its retry time by as much, `sending` past the lease.
FEEDBACK_SWEEP_INTERVAL = env.float("FEEDBACK_SWEEP_INTERVAL", 5)
FEEDBACK_STUCK_AFTER = env.float("FEEDBACK_STUCK_AFTER", 30)

# Which worker nodes live, and their pool sizes, by Celery's remote control
# (workers/presence.py): a node that does not answer within this many seconds is dead,
# and the sweeper takes back its `sending` rows without waiting for their lease.
WORKER_PRESENCE_TIMEOUT = env.float("WORKER_PRESENCE_TIMEOUT", 1)
# Seconds between two counts of the worker processes (a beat job), for the queue's pace;
# a count is used for three of them.
WORKER_CENSUS_SECONDS = env.float("WORKER_CENSUS_SECONDS", 10)
WORKER_CENSUS_MAX_AGE = 3 * WORKER_CENSUS_SECONDS

# The sends' queue, and the sweeper's own, which every worker also consumes (no -Q):
# behind a backlog of sends longer than a sweep's expiry, every sweep on the sends'
# queue expires unrun, so a row a killed pool process left `sending` waited for the
# whole backlog. Its take-back runs on the sweeper's queue, served between two sends.
# Re-enqueuing waiting rows stays behind the sends: while a backlog lasts, their
# messages are in it, and sending them again every STUCK_AFTER would only grow it.
CELERY_TASK_DEFAULT_QUEUE = "celery"
FEEDBACK_SWEEP_QUEUE = "feedback-sweeps"
CELERY_TASK_QUEUES = (
    Queue(CELERY_TASK_DEFAULT_QUEUE, Exchange(CELERY_TASK_DEFAULT_QUEUE),
          routing_key=CELERY_TASK_DEFAULT_QUEUE),
    Queue(FEEDBACK_SWEEP_QUEUE, Exchange(FEEDBACK_SWEEP_QUEUE), routing_key=FEEDBACK_SWEEP_QUEUE),
)  # fmt: skip
CELERY_BEAT_SCHEDULE = {
    "feedback-requeue-stuck": {
        "task": "feedback.tasks.requeue_stuck_feedback",
        "schedule": FEEDBACK_SWEEP_INTERVAL,
        # A sweep that could not run in time is replaced by the next one.
        "options": {"expires": FEEDBACK_SWEEP_INTERVAL},
    },
    "feedback-take-back-abandoned": {
        "task": "feedback.tasks.take_back_abandoned_feedback",
        "schedule": FEEDBACK_SWEEP_INTERVAL,
        "options": {"expires": FEEDBACK_SWEEP_INTERVAL, "queue": FEEDBACK_SWEEP_QUEUE},
    },
    "workers-census": {
        "task": "workers.tasks.take_workers_census",
        "schedule": WORKER_CENSUS_SECONDS,
        "options": {"expires": WORKER_CENSUS_SECONDS, "queue": FEEDBACK_SWEEP_QUEUE},
    },
    # Session rows past their end.
    "sessions-clear-expired": {
        "task": "web.tasks.sessions_clear_expired",
        "schedule": 300.0,
        "options": {"expires": 300.0},
    },
}
# Beat's state file lives outside the repository, one per checkout.
CELERY_BEAT_SCHEDULE_FILENAME = env.str(
    "CELERY_BEAT_SCHEDULE_FILENAME",
    str(
        Path(tempfile.gettempdir())
        / f"feedback-celerybeat-{BASE_DIR.name}-{hashlib.sha256(bytes(BASE_DIR)).hexdigest()[:8]}"
    ),
)

# Redis only redelivers an unacknowledged message after the visibility
# timeout. Retries wait (countdown) inside the worker as unacknowledged
# messages, so the timeout must exceed the longest retry delay plus a run,
# or a waiting retry is delivered a second time. A worker killed outright gets
# its message back after this long; the sweeper usually acts much sooner.
# Celery's Redis docs ask for the same value in all three places below.
CELERY_VISIBILITY_TIMEOUT = int(
    2 * (FEEDBACK_RETRY_BACKOFF_MAX + CELERY_TASK_TIME_LIMIT) + FEEDBACK_STUCK_AFTER
)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # The queues, the workers' control messages (ping, the health check) and
    # events (Flower) all live under it.
    "global_keyprefix": f"{REDIS_PREFIX}:",
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
    "socket_connect_timeout": REDIS_TIMEOUT,
    "socket_timeout": REDIS_TIMEOUT,
}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {
    "global_keyprefix": f"{REDIS_PREFIX}:",
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
}
# Publishing while Redis is down: one quick retry, then give up. The row is
# already stored as `queued` and the sweeper enqueues it once Redis is back,
# so the person gets their answer in well under a few seconds either way.
# No request may wait for ever for a pooled broker connection (Celery's default):
# enqueueing gives up after this many seconds and the sweeper takes the row.
FEEDBACK_ENQUEUE_WAIT = env.float("FEEDBACK_ENQUEUE_WAIT", 2)
CELERY_BROKER_POOL_ACQUIRE_TIMEOUT = FEEDBACK_ENQUEUE_WAIT
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0.2,
    "interval_step": 0.2,
    "interval_max": 0.2,
}

# CHANNEL_LAYER picks the channels-redis backend: "pubsub" (RedisPubSubChannelLayer,
# Redis PUBLISH/SUBSCRIBE) or "core" (RedisChannelLayer, sorted sets per
# process). docs/benchmarks-notes.md measured both: pubsub delivers sooner, and core
# silently dropped updates in a burst (its per-process inbox holds 100 messages).
CHANNEL_LAYER_BACKENDS = {
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
    "core": "channels_redis.core.RedisChannelLayer",
}
CHANNEL_LAYER = env.str("CHANNEL_LAYER", "pubsub").strip().lower() or "pubsub"
if CHANNEL_LAYER not in CHANNEL_LAYER_BACKENDS:
    raise ImproperlyConfigured(
        f"CHANNEL_LAYER must be one of {', '.join(CHANNEL_LAYER_BACKENDS)}, not {CHANNEL_LAYER!r}."
    )

# Seconds between a watcher's re-reads of the row, which catch an update the
# channel layer lost (it delivers at most once); a state is only sent if newer.
REALTIME_RESYNC_SECONDS = env.float("REALTIME_RESYNC_SECONDS", 5)
# All the re-reads of one daphne process together, per second, at most: with
# many watchers each re-reads less often (realtime/consumers.py says why).
REALTIME_RESYNC_PER_SECOND = env.float("REALTIME_RESYNC_PER_SECOND", 50)

# Seconds between two heartbeats on every open status socket, and seconds of
# silence after which the page takes its socket for dead (reconnects, polls).
# The silence must outlast two heartbeats: one late frame is not a dead socket (a system check).
REALTIME_HEARTBEAT_SECONDS = env.float("REALTIME_HEARTBEAT_SECONDS", 5)
REALTIME_SILENCE_SECONDS = env.float("REALTIME_SILENCE_SECONDS", 12)
# How many things one page's socket may watch at once.
REALTIME_WATCHES_PER_SOCKET = env.int("REALTIME_WATCHES_PER_SOCKET", 50)
# Status sockets one daphne process keeps open per session and per client
# address, and new sockets per second per client address (realtime/socket_limits.py).
# Over them a socket is closed with code 4429 and the page polls over HTTP instead.
REALTIME_MAX_SOCKETS_PER_SESSION = env.int("REALTIME_MAX_SOCKETS_PER_SESSION", 20)
REALTIME_MAX_SOCKETS_PER_CLIENT = env.int("REALTIME_MAX_SOCKETS_PER_CLIENT", 200)
REALTIME_CONNECTS_PER_SECOND = env.float("REALTIME_CONNECTS_PER_SECOND", 10)

# The core layer waits for messages with BZPOPMIN, up to 5 s on the server
# (RedisChannelLayer.brpop_timeout), and redis-py 8 reads every reply within
# 5 s by default: on a busy machine the empty answer to an idle wait came a
# little late, the read timed out, and the socket's consumer died (close 1011,
# every later update lost). Its reads get room past the wait: as long again, plus
# REDIS_TIMEOUT.
CORE_LAYER_BLOCKING_POP = 5  # RedisChannelLayer's default brpop_timeout
CHANNEL_LAYER_HOST = {"address": REDIS_URL, "socket_connect_timeout": REDIS_TIMEOUT}
if CHANNEL_LAYER == "core":
    CHANNEL_LAYER_HOST["socket_timeout"] = 2 * CORE_LAYER_BLOCKING_POP + REDIS_TIMEOUT
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": CHANNEL_LAYER_BACKENDS[CHANNEL_LAYER],
        "CONFIG": {"hosts": [CHANNEL_LAYER_HOST], "prefix": f"{REDIS_PREFIX}:asgi:"},
    }
}

CACHES = {
    "default": {
        # django-redis: its connection pools are per process, not per thread (daphne runs
        # each request in a new thread), and `get_redis_connection()` is the one way the
        # app reaches Redis itself (the rate limit's pipeline).
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": REDIS_PREFIX,
        "OPTIONS": {
            # With Redis down a request must not hang on the rate limit's counters
            # (the limit then lets submissions through).
            "SOCKET_CONNECT_TIMEOUT": REDIS_TIMEOUT,
            "SOCKET_TIMEOUT": REDIS_TIMEOUT,
        },
    }
}

# /healthz answers from a report at most this many seconds old: one check runs
# at a time per process, however many probes ask (health/checks.py).
HEALTH_CACHE_SECONDS = env.float("HEALTH_CACHE_SECONDS", 1.5)

# --- Email ------------------------------------------------------------------
# When EMAIL_HOST is set, mail goes over SMTP to it. Otherwise, in debug, the
# console backend prints it in the worker's log.
email_host = env.str("EMAIL_HOST", "")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", "Feedback <feedback@localhost>")
if email_host or not DEBUG:
    MAILERS = {
        "default": {
            # Django's SMTP backend with IDNA 2008, SMTPUTF8, 8BITMIME and our EHLO name.
            "BACKEND": "feedback.smtp.EmailBackend",
            "OPTIONS": {
                "host": email_host or "localhost",
                "port": env.int("EMAIL_PORT", 25),
                "username": env.str("EMAIL_HOST_USER", ""),
                "password": env.str("EMAIL_HOST_PASSWORD", ""),
                "use_tls": env.bool("EMAIL_USE_TLS", False),
                # A hung mail server must never hold a worker for long.
                "timeout": env.float("EMAIL_TIMEOUT", 10),
            },
        }
    }
else:
    MAILERS = {"default": {"BACKEND": "django.core.mail.backends.console.EmailBackend"}}


def _domain_of(address: str) -> str:
    return address.strip().rstrip(">").rpartition("@")[2].strip()


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
    return _domain_of(DEFAULT_FROM_EMAIL) or "localhost"


# The name we give in EHLO (real servers check it), and the domain of each
# confirmation's Message-ID; both in ASCII (IDNA 2008 for a Unicode domain).
# The EHLO name defaults to the first name in DJANGO_ALLOWED_HOSTS.
def _idna(domain: str) -> str:
    if domain.isascii():
        return domain
    return idna.encode(domain, uts46=True, transitional=False).decode("ascii")


EMAIL_HELO_NAME = _idna(env.str("EMAIL_HELO_NAME", "").strip() or _helo_default(ALLOWED_HOSTS))
# Empty: the domain of DEFAULT_FROM_EMAIL (read when each email is built).
EMAIL_MESSAGE_ID_DOMAIN = _idna(env.str("EMAIL_MESSAGE_ID_DOMAIN", "").strip())

# The local SMTP server of `make run` (`manage.py mailbox`) stores what it
# receives here; the debug-only Outbox page reads it.
DEV_MAILBOX = Path(env.str("DEV_MAILBOX", "").strip() or BASE_DIR / "var" / "mailbox.jsonl")
# Whether mail goes to that local mailbox (set by `make run` when it starts
# it): only then does a sent status link to the Outbox.
DEV_MAILBOX_IN_USE = DEBUG and env.bool("DEV_MAILBOX_IN_USE", False)

# --- The feedback domain ---------------------------------------------------
# Seconds the task spends "talking to a slow mail service" before the real
# send, like the tutorial's time.sleep(); progress is published meanwhile.
FEEDBACK_SEND_DELAY = env.float("FEEDBACK_SEND_DELAY", 3)
# Seconds after submitting (with Celery) during which the submitter may undo
# and no worker sends; 0 switches the window off.
FEEDBACK_UNDO_SECONDS = max(0.0, env.float("FEEDBACK_UNDO_SECONDS", 5))
# How many queued feedback the queue-wide event lists by submit time (the head
# of the line; feedback/queue.py): a page further back shows "at least this many
# ahead". It bounds the event's size, which every queued watcher receives.
FEEDBACK_QUEUE_LINE_MAX = env.int("FEEDBACK_QUEUE_LINE_MAX", 100)
# Submissions per client address, a count per period ("5/m", "100/h", "10/30s");
# "off" (or empty) switches the limit off.
FEEDBACK_RATE_LIMIT: str | None = env.str("FEEDBACK_RATE_LIMIT", "5/m").strip()
if FEEDBACK_RATE_LIMIT.lower() in {"", "off", "0"}:
    FEEDBACK_RATE_LIMIT = None
elif not re.fullmatch(r"[1-9]\d*/\d*[smhd]", FEEDBACK_RATE_LIMIT):
    raise ImproperlyConfigured(
        f"FEEDBACK_RATE_LIMIT={FEEDBACK_RATE_LIMIT!r}: use a count per period, like 5/m or 100/h."
    )
# The limit counts in the shared Redis cache, one round trip per submission
# (feedback/limits.py); if that cache is unreachable the limit fails open, so a
# submission is still stored.
# How many proxies in front of daphne append to X-Forwarded-For: the client's
# address (rate limit, socket caps) is the entry that many from the right.
# 0: the connection's peer address (web/client_address.py).
TRUSTED_PROXY_HOPS = env.int("TRUSTED_PROXY_HOPS", 0)
# Seconds a watch token (status page, websocket) stays valid after submitting.
FEEDBACK_TOKEN_MAX_AGE = env.int("FEEDBACK_TOKEN_MAX_AGE", 24 * 60 * 60)

# --- Static files -------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
# Serve straight from the app and static/ directories: no collectstatic step
# is needed to run the app with daphne.
WHITENOISE_USE_FINDERS = True
# staticfiles/ exists only after an optional collectstatic; its absence is normal here.
warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)

# English by default; the browser's Accept-Language (or the page's language
# selector, a cookie) picks another. See "Adding a language" in the README.
LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("pt-br", _("Brazilian Portuguese"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
# Our own TIME_FORMAT and SHORT_DATETIME_FORMAT per language (with seconds).
FORMAT_MODULE_PATH = ["django_celery.formats"]
# Times are stored in UTC and shown in the person's zone when the page knows
# it (web/time_zone.py), in UTC otherwise.
TIME_ZONE = "UTC"
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
