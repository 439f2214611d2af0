"""The real stack for a bench run: Redis, SMTP sink, database, Celery worker, daphne.

Reuses the test suite's process wrappers (tests/support) and devtools'
RedisServer, so the bench starts processes exactly as the integration tests do.
Everything listens on 127.0.0.1 and is stopped by ``close()`` (also at exit).
"""

import os
import resource
import secrets
import shutil
import signal
import tempfile
import time
from pathlib import Path

from devtools.postgres_server import PostgresServer
from devtools.processes import CeleryWorker, DaphneServer
from devtools.redis_server import RedisServer
from devtools.smtp_sink import SmtpSink

# 10,000 sockets on each side of scenario 3, plus files, pipes and Redis.
WANTED_NOFILE = 65_536


def raise_nofile_limit(wanted: int = WANTED_NOFILE) -> tuple[int, int]:
    """Raise this process's open-files limit (inherited by daphne and the worker).

    The soft limit goes up to the hard one; the hard one too when we may
    (root with CAP_SYS_RESOURCE). Returns the (soft, hard) now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target_hard = hard if hard == resource.RLIM_INFINITY else max(hard, wanted)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, target_hard), target_hard))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


class TimedSmtpSink(SmtpSink):
    """The tests' SMTP sink, noting when each message arrived (time.time())."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.arrivals: list[float] = []

    async def handle_DATA(self, server, session, envelope):
        reply = await super().handle_DATA(server, session, envelope)
        if reply.startswith("250"):
            with self._cond:
                self.arrivals.append(time.time())
        return reply

    def clear(self) -> None:
        with self._cond:
            super().clear()
            self.arrivals.clear()


class BenchStack:
    """Owns every process of a run. ``env()`` is what the app's processes get."""

    def __init__(self, *, keep_logs: bool = False, database: str = "sqlite") -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="feedback-bench-"))
        self.keep_logs = keep_logs
        self.redis = RedisServer()
        self.smtp = TimedSmtpSink()
        self.database = database
        # postgres: a private server (devtools.postgres_server), Django's pool in every process.
        self.postgres = PostgresServer() if database == "postgres" else None
        sqlite_url = f"sqlite:///{self.dir / 'bench.sqlite3'}"
        self.database_url = self.postgres.url("bench") if self.postgres else sqlite_url
        self.secret_key = secrets.token_urlsafe(50)
        self.daphne: DaphneServer | None = None
        self.worker: CeleryWorker | None = None
        self._numbers: dict[str, int] = {}

    # -- environment -----------------------------------------------------------
    def env(self, **overrides: object) -> dict[str, str]:
        """Production settings (debug off) on plain HTTP at 127.0.0.1."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
        env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        env.update(
            DJANGO_SETTINGS_MODULE="django_celery.settings",
            DJANGO_DEBUG="0",
            DJANGO_SECRET_KEY=self.secret_key,
            DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
            # Plain HTTP on loopback: no redirect to HTTPS, cookies over HTTP.
            DJANGO_SECURE_SSL_REDIRECT="0",
            DJANGO_SECURE_COOKIES="0",
            DJANGO_SECURE_HSTS_SECONDS="0",
            REDIS_URL=self.redis.url,
            DATABASE_URL=self.database_url,
            EMAIL_HOST=self.smtp.host,
            EMAIL_PORT=str(self.smtp.port),
            FEEDBACK_SEND_DELAY="0",
            # The bench measures the send path, not the time a person has to undo.
            FEEDBACK_UNDO_SECONDS="0",
            # Every bench client comes from 127.0.0.1: the per-address limit on
            # submissions (5/m by default) is raised for this run only, not off,
            # so its cost (one Redis INCR per submission) is still measured.
            FEEDBACK_RATE_LIMIT="100000000/m",
            # The same for the status sockets: 10,000 of them from one address and session.
            REALTIME_MAX_SOCKETS_PER_SESSION="1000000",
            REALTIME_MAX_SOCKETS_PER_CLIENT="1000000",
            REALTIME_CONNECTS_PER_SECOND="1000000",
            PYTHONUNBUFFERED="1",
        )
        env.update({key: str(value) for key, value in overrides.items()})
        return env

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> "BenchStack":
        self.redis.start()
        self.smtp.start()
        if self.postgres is not None:
            import psycopg

            self.postgres.start()
            with psycopg.connect(self.postgres.url(), autocommit=True) as admin:
                admin.execute("CREATE DATABASE bench")
        # This process uses Django too (to prepare rows and read results): same settings.
        os.environ.update(self.env())
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)
        return self

    def _log(self, name: str) -> Path:
        number = self._numbers[name] = self._numbers.get(name, 0) + 1
        return self.dir / f"{name}-{number}.log"

    def start_daphne(self, **env: object) -> DaphneServer:
        self.stop_daphne()
        self.daphne = DaphneServer(env=self.env(**env), log_path=self._log("daphne")).start()
        return self.daphne

    def stop_daphne(self) -> None:
        if self.daphne is not None:
            self.daphne.stop(timeout=5)
            self.daphne = None

    def start_worker(
        self,
        *,
        concurrency: int | None = None,
        pool: str = "prefork",
        prefetch: int | None = None,
        purge: bool = True,
        **env: object,
    ) -> CeleryWorker:
        self.stop_worker()
        extra: list[str] = []
        if prefetch is not None:
            extra.append(f"--prefetch-multiplier={prefetch}")
        self.worker = CeleryWorker(
            env=self.env(**env),
            log_path=self._log("worker"),
            node_name=f"bench-{os.getpid()}@%h",
            pool=pool,
            concurrency=concurrency or os.cpu_count() or 1,
            purge=purge,
            extra_args=tuple(extra),
            ready_timeout=60,
        ).start()
        return self.worker

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop(timeout=5)
            self.worker = None

    def purge_queue(self) -> None:
        """Drop every task still waiting in the broker (a phase's leftovers)."""
        import redis

        client = redis.Redis.from_url(self.redis.url)
        try:
            client.flushdb()
        finally:
            client.close()

    def close(self) -> None:
        self.stop_daphne()
        self.stop_worker()
        self.smtp.stop()
        self.redis.close()
        if self.postgres is not None:
            self.postgres.close()
        if not self.keep_logs:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "BenchStack":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        if exc_info[0] is not None:
            self.keep_logs = True  # what went wrong is in there
        self.close()


def process_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def process_open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def process_nofile_limit(pid: int) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return " / ".join(line.split()[3:5])
    return "?"


def terminate(proc, timeout: float = 5.0) -> None:
    """Stop a subprocess.Popen we started: SIGTERM, then SIGKILL."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except Exception:
            proc.kill()
            proc.wait(5)
