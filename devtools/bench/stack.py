"""The real stack of one bench configuration: Redis, database, SMTP sink, daphne(s), worker(s).

Processes come from devtools.processes; the SMTP sink is the Outbox's server in its
own process (``manage.py mailbox``). Everything listens on 127.0.0.1 and is
stopped by ``close()``. ``cpu()`` reads each role's CPU seconds (the process
and its children, from /proc via psutil) so a scenario can report them apart.
"""

import contextlib
import json
import os
import resource
import secrets
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path

import psutil

from devtools.processes import (
    CeleryBeat,
    CeleryWorker,
    DaphneServer,
    DevMailbox,
    HAProxy,
    PostgresServer,
    RedisServer,
)


def raise_nofile_limit(wanted: int = 65_536) -> None:
    """10,000 sockets on each side of scenario 5: raise the open-files limit (inherited)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard == resource.RLIM_INFINITY else max(hard, wanted)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, target), target))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its live descendants (0 when gone)."""
    try:
        root = psutil.Process(pid)
        total = sum(root.cpu_times()[:2])
        for child in root.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                total += sum(child.cpu_times()[:2])
        return total
    except psutil.NoSuchProcess:
        return 0.0


def rss_bytes(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


class BenchStack:
    """Owns every process of one configuration. ``env()`` is what the app's processes get."""

    def __init__(self, *, database: str = "sqlite", app: str = "django_celery",
                 **env: object) -> None:  # fmt: skip
        """``app``: the Django project's package (its settings, asgi and Celery app), the
        app's or the baseline's (devtools/bench/baseline)."""
        self.dir = Path(tempfile.mkdtemp(prefix="feedback-bench-"))
        self.database, self.app = database, app
        self.extra_env = {key: str(value) for key, value in env.items()}
        self.redis = RedisServer()
        self.postgres = PostgresServer() if database == "postgres" else None
        self.database_url = (
            self.postgres.url("bench") if self.postgres else f"sqlite:///{self.dir / 'db.sqlite3'}"
        )
        self.secret_key = secrets.token_urlsafe(50)
        self.daphnes: list[DaphneServer] = []
        self.workers: list[CeleryWorker] = []
        self.beat: CeleryBeat | None = None
        self.haproxy: HAProxy | None = None
        self.sink: DevMailbox | None = None
        self._logs, self._read, self._arrivals = 0, 0, []

    def env(self, **overrides: object) -> dict[str, str]:
        """Production settings (debug off), plain HTTP on loopback, limits raised for one client."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
        env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        env.update(
            DJANGO_SETTINGS_MODULE=f"{self.app}.settings", DJANGO_DEBUG="0",
            DJANGO_SECRET_KEY=self.secret_key, DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
            DJANGO_SECURE_SSL_REDIRECT="0", DJANGO_SECURE_COOKIES="0",
            DJANGO_SECURE_HSTS_SECONDS="0", REDIS_URL=self.redis.url,
            DATABASE_URL=self.database_url, FEEDBACK_SEND_DELAY="0", FEEDBACK_UNDO_SECONDS="0",
            # Every bench client is 127.0.0.1: the limits are raised (not off, so still paid).
            FEEDBACK_RATE_LIMIT="100000000/m", REALTIME_MAX_SOCKETS_PER_SESSION="1000000",
            REALTIME_MAX_SOCKETS_PER_CLIENT="1000000", REALTIME_CONNECTS_PER_SECOND="1000000",
            REALTIME_WATCHES_PER_SOCKET="100000", PYTHONUNBUFFERED="1",
        )  # fmt: skip
        if self.haproxy is not None or len(self.daphnes) > 1:
            env["TRUSTED_PROXY_HOPS"] = "1"
        env.update(self.extra_env)
        env.update({key: str(value) for key, value in overrides.items()})
        return env

    def start(self) -> "BenchStack":
        self.redis.start()
        (self.dir / "mailbox.jsonl").touch()  # read before the first email comes
        sink_env = self.env(DJANGO_SETTINGS_MODULE="django_celery.settings")  # the Outbox's
        self.sink = DevMailbox(path=self.dir / "mailbox.jsonl", env=sink_env,
                               log_path=self.log("sink")).start()  # fmt: skip
        self.extra_env.update(EMAIL_HOST=self.sink.host, EMAIL_PORT=str(self.sink.port))
        if self.postgres is not None:
            import psycopg

            self.postgres.start()
            with psycopg.connect(self.postgres.url(), autocommit=True) as admin:
                admin.execute("CREATE DATABASE bench")
        # This process prepares rows and reads results through the app: same settings.
        os.environ.update(self.env())
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)
        return self

    def arrivals(self) -> list[tuple[float, str]]:
        """(time.time() when the sink took it, recipient) of each email, in order; the
        mailbox file is read on from where the last call stopped (polled while a run lasts)."""
        with open(self.sink.path, "rb") as mailbox:
            mailbox.seek(self._read)
            whole = mailbox.read().rpartition(b"\n")[0]  # a line still being written waits
        self._read += len(whole) + bool(whole)
        for record in map(json.loads, whole.splitlines()):
            at = datetime.fromisoformat(record["received_at"]).timestamp()
            self._arrivals += [(at, rcpt) for rcpt in record["rcpt_tos"]]
        return list(self._arrivals)

    def log(self, name: str) -> Path:
        self._logs += 1
        return self.dir / f"{name}-{self._logs}.log"

    def start_web(self, nodes: int = 1, **env: object) -> str:
        """``nodes`` daphne processes (behind HAProxy when more than one); returns the URL."""
        self.stop_web()
        self.daphnes = [
            DaphneServer(env=self.env(TRUSTED_PROXY_HOPS=int(nodes > 1), **env),
                         application=f"{self.app}.asgi:application",
                         log_path=self.log("daphne"), extra_args=("--proxy-headers",) * (nodes > 1))
            for _ in range(nodes)
        ]  # fmt: skip
        for daphne in self.daphnes:
            daphne.start()
        if nodes == 1:
            return self.daphnes[0].url
        web = [f"{d.host}:{d.port}" for d in self.daphnes]
        self.haproxy = HAProxy(web=web, log_path=self.log("haproxy")).start()
        time.sleep(2.5)  # both servers pass their first health check
        return self.haproxy.url

    def stop_web(self) -> None:
        for process in [*self.daphnes, self.haproxy]:
            if process is not None:
                process.stop(timeout=5)
        self.daphnes, self.haproxy = [], None

    def start_workers(self, nodes: int = 1, *, concurrency: int = 2, **env: object) -> None:
        self.stop_workers()
        for number in range(nodes):
            worker = CeleryWorker(
                env=self.env(**env), log_path=self.log("worker"), concurrency=concurrency,
                node_name=f"bench{number}-{os.getpid()}@%h", ready_timeout=60,
            )  # fmt: skip
            worker.argv[worker.argv.index("django_celery")] = self.app  # celery -A APP
            self.workers.append(worker.start())

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop(timeout=5)
        self.workers = []

    def fresh_queue(self, *, restart: bool = True) -> int:
        """Stop the workers and drop what waits in the queue, so that a run does not
        inherit the last one's backlog; start them again. Returns how many were dropped."""
        from importlib import import_module

        nodes = len(self.workers)
        self.stop_workers()
        dropped = import_module(self.app).celery_app.control.purge()
        if restart and nodes:
            self.start_workers(nodes)
        return dropped

    def start_beat(self, **env: object) -> None:
        schedule = self.dir / "beat-schedule"
        self.beat = CeleryBeat(env=self.env(**env), log_path=self.log("beat"), schedule=schedule)
        self.beat.start()

    def stop_beat(self) -> None:
        if self.beat is not None:
            self.beat.stop(timeout=5)
            self.beat = None

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far per role: compare two readings to get a window's use."""
        roles = {"daphne": self.daphnes, "worker": self.workers, "redis": [self.redis],
                 "postgres": [self.postgres], "sink": [self.sink],
                 "haproxy": [self.haproxy]}  # fmt: skip
        return {role: sum(cpu_seconds(p.pid) for p in processes if p is not None and p.running)
                for role, processes in roles.items()}  # fmt: skip

    def close(self) -> None:
        for process in [*self.daphnes, self.haproxy, *self.workers, self.beat, self.sink,
                        self.redis, self.postgres]:  # fmt: skip
            if process is not None:
                process.stop(timeout=5)
        for server in (self.redis, self.postgres):
            if server is not None:
                server.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "BenchStack":
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc_info) -> None:
        self.close()
