"""The app's real processes (a Celery worker, daphne) as subprocesses, for the tests and the bench.

Each runs in its own process group (so a stop reaches a worker's pool children
too), writes to a log file that the fixtures attach to a failing test's report,
and is registered so that it is killed at exit even if a teardown never runs.
"""

import atexit
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from devtools.ports import free_port, wait_for_port

REPO_ROOT = Path(__file__).resolve().parents[1]

_live: set["ManagedProcess"] = set()


@atexit.register
def _kill_leftovers() -> None:
    for process in list(_live):
        process.kill_group(signal.SIGKILL)


def _children(pid: int) -> list[int]:
    """Direct children of ``pid``, read from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The comm field may hold spaces and parentheses: ppid follows the last ")".
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            found.append(int(entry))
    return sorted(found)


class ManagedProcess:
    name = "process"
    ready_timeout = 30.0

    def __init__(self, argv: list[str], *, env: dict[str, str], log_path: Path) -> None:
        self.argv = argv
        self.env = env
        self.log_path = Path(log_path)
        self.proc: subprocess.Popen | None = None
        self._log_offset = 0

    # -- lifecycle -----------------------------------------------------------
    def start(self):
        if self.running:
            return self
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            log.write(f"$ {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv,
                cwd=REPO_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _live.add(self)
        try:
            self.wait_ready()
        except BaseException:
            self.stop(timeout=2)
            raise
        return self

    def wait_ready(self) -> None:
        raise NotImplementedError

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
        """Send ``sig`` to the main process and everything it started."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def wait(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the group, then SIGKILL to what is left after ``timeout``."""
        if self.proc is None:
            return
        self.kill_group(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout)
        # Also reaches children that outlived their parent (a pool child, say).
        self.kill_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        _live.discard(self)

    # -- output ------------------------------------------------------------------
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, pattern: str, timeout: float = 10.0, *, since_start: bool = True):
        """Wait for a regex in the log (by default, in the output of the latest start)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_text()
            if since_start:
                text = text[self._log_offset :]
            match = regex.search(text)
            if match:
                return match
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {self.proc.returncode} while waiting for "
                    f"{pattern!r}; log:\n{self._tail()}"
                )
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{self.name}: no {pattern!r} in {timeout:g}s; log:\n{self._tail()}"
                )
            time.sleep(0.05)

    def _tail(self, chars: int = 4000) -> str:
        return self.log_text()[-chars:]

    def __repr__(self) -> str:
        state = f"pid {self.proc.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} {state}>"


class CeleryWorker(ManagedProcess):
    name = "celery worker"

    def __init__(
        self,
        *,
        env: dict[str, str],
        log_path: Path,
        node_name: str,
        pool: str = "prefork",
        concurrency: int = 1,
        purge: bool = False,
        extra_args: tuple[str, ...] = (),
        ready_timeout: float = 30.0,
    ) -> None:
        argv = [
            sys.executable, "-m", "celery", "-A", "django_celery", "worker",
            f"--pool={pool}", f"--concurrency={concurrency}", "--loglevel=INFO",
            "-n", node_name,
            # No waiting for, or chatting with, other workers: faster and quieter.
            "--without-mingle", "--without-gossip",
        ]  # fmt: skip
        if purge:
            argv.append("--purge")
        argv.extend(extra_args)
        super().__init__(argv, env=env, log_path=log_path)
        self.node_name = node_name
        self.ready_timeout = ready_timeout

    def wait_ready(self) -> None:
        self.wait_for_log(r"@\S+ ready\.", timeout=self.ready_timeout)

    @property
    def hostname(self) -> str:
        """The node's name with ``%h`` expanded: what its tasks see as ``request.hostname``."""
        return self.wait_for_log(r"(\S+@\S+) ready\.", timeout=1).group(1)

    def pool_pids(self) -> list[int]:
        """The pids of the prefork pool's child processes (where tasks run)."""
        return _children(self.pid) if self.running else []


class DaphneServer(ManagedProcess):
    name = "daphne"

    def __init__(
        self,
        *,
        env: dict[str, str],
        log_path: Path,
        port: int | None = None,
        application: str = "django_celery.asgi:application",
        ready_timeout: float = 30.0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.host = "127.0.0.1"
        self.port = port if port is not None else free_port(self.host)
        argv = [
            sys.executable, "-m", "daphne", "-b", self.host, "-p", str(self.port),
            *extra_args, application,
        ]  # fmt: skip
        super().__init__(argv, env=env, log_path=log_path)
        self.ready_timeout = ready_timeout

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def wait_ready(self) -> None:
        wait_for_port(self.host, self.port, timeout=self.ready_timeout, proc=self.proc)


class CeleryBeat(ManagedProcess):
    """Celery beat, as `make run` starts it (its schedule file in ``schedule``)."""

    name = "celery beat"

    def __init__(self, *, env: dict[str, str], log_path: Path, schedule: Path) -> None:
        argv = [
            sys.executable, "-m", "celery", "-A", "django_celery", "beat", "--loglevel=INFO",
            f"--schedule={schedule}",
        ]  # fmt: skip
        super().__init__(argv, env=env, log_path=log_path)

    def wait_ready(self) -> None:
        self.wait_for_log(r"beat: Starting", timeout=30)


HAPROXY = os.environ.get("HAPROXY_BIN", "/usr/sbin/haproxy")
HAPROXY_CONFIG = REPO_ROOT / "deploy" / "haproxy.cfg"


class HAProxy(ManagedProcess):
    """HAProxy (Debian's package) with ``deploy/haproxy.cfg``, in front of daphne processes.

    The configuration reads its addresses from the environment, as in production.
    """

    name = "haproxy"

    def __init__(self, *, web: list[str], log_path: Path, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port(host)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "FEEDBACK_BIND": f"{host}:{self.port}",
            "FEEDBACK_HOST": host,
            **{f"WEB{number}": address for number, address in enumerate(web, start=1)},
        }
        # -db: stay in the foreground, log to stderr.
        super().__init__([HAPROXY, "-f", str(HAPROXY_CONFIG), "-db"], env=env, log_path=log_path)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def wait_ready(self) -> None:
        wait_for_port(self.host, self.port, timeout=self.ready_timeout, proc=self.proc)
