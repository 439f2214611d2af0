"""The whole stack in one terminal: ``python -m devtools.run`` (what ``make run`` starts).

It starts the processes of ``devtools.processes`` (Redis first, once it answers
the rest side by side), prints their output prefixed by name (each also has a
log in ``var/log/``), and on Ctrl-C or SIGTERM, or when one of them exits, stops
them all, last first (the process group, then SIGKILL after 5 s).

Redis: ``REDIS_URL`` when set; else a private redis-server on a free port, never
a Redis that happens to answer at 6379: another checkout or project there would
take this stack's tasks. Either way every key, queue and channel goes under
``REDIS_PREFIX`` (by default a name of this checkout), which the banner states.

Mail: ``EMAIL_HOST`` when set; else a local SMTP server (``manage.py mailbox``)
on a free port, storing what it receives for the debug-only Outbox page.

Flower, Celery's monitor, when ``FLOWER=1`` (on ``FLOWER_PORT``, 5555).

To add a process, add an entry in ``build_processes``.
"""

import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from devtools.ports import free_port
from devtools.processes import (
    CeleryBeat,
    CeleryWorker,
    DaphneServer,
    DevMailbox,
    Flower,
    Process,
    RedisServer,
    StartError,
)
from django_celery.redis_prefix import checkout_prefix

REPO_ROOT = Path(__file__).resolve().parent.parent
# Where the development mailbox stores mail unless DEV_MAILBOX says otherwise (as in settings).
DEFAULT_MAILBOX = REPO_ROOT / "var" / "mailbox.jsonl"
LOG_DIR = REPO_ROOT / "var" / "log"
STOP_TIMEOUT = 5


@dataclass
class RedisChoice:
    url: str
    private: RedisServer | None = None  # set when we start our own

    @property
    def source(self) -> str:
        if self.private is not None:
            return f"private redis-server ({self.private.binary})"
        return "REDIS_URL"


def resolve_redis(environ: dict[str, str] | os._Environ = os.environ) -> RedisChoice:
    """Which Redis the stack uses; a ``RedisChoice.private`` server is not started yet."""
    url = environ.get("REDIS_URL", "").strip()
    if url:
        return RedisChoice(url=url)
    server = RedisServer(port=free_port())
    return RedisChoice(url=server.url, private=server)


def resolve_redis_prefix(environ: dict[str, str] | os._Environ = os.environ) -> str:
    """What every process of the stack puts before its Redis keys (settings.REDIS_PREFIX)."""
    return environ.get("REDIS_PREFIX", "").strip() or checkout_prefix(REPO_ROOT)


@dataclass(frozen=True)
class Mailbox:
    """The local SMTP server the stack starts when no EMAIL_HOST is given."""

    port: int
    path: Path
    host: str = "127.0.0.1"

    def app_env(self) -> dict[str, str]:
        """What the worker and web need to send to it, and the web to read it."""
        return {
            "EMAIL_HOST": self.host,
            "EMAIL_PORT": str(self.port),
            "DEV_MAILBOX": str(self.path),
            "DEV_MAILBOX_IN_USE": "1",
        }


def resolve_mailbox(environ: dict[str, str] | os._Environ = os.environ) -> Mailbox | None:
    if environ.get("EMAIL_HOST", "").strip():
        return None  # a real mail server is configured
    path = Path(environ.get("DEV_MAILBOX", "").strip() or DEFAULT_MAILBOX)
    return Mailbox(port=free_port(), path=path)


def resolve_flower(environ: dict[str, str] | os._Environ = os.environ) -> int | None:
    """Flower's port when ``FLOWER`` is on, else None (off by default)."""
    if environ.get("FLOWER", "").strip().lower() not in {"1", "true", "yes", "on"}:
        return None
    return int(environ.get("FLOWER_PORT", "5555"))


@dataclass
class Stack:
    host: str
    port: int
    redis: RedisChoice
    env: dict[str, str] = field(default_factory=dict)
    log_dir: Path = LOG_DIR
    mailbox: Mailbox | None = None
    flower_port: int | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def where_to_open(self) -> str:
        """The last line of the startup output: every page a person may want."""
        places = [f"the app {self.url}"]
        if self.mailbox is not None:
            places.append(f"the Outbox {self.url}outbox/")
        places.append(f"the admin {self.url}admin/ (`make admin` prints a login)")
        if self.flower_port is not None:
            places.append(f"Flower http://{self.host}:{self.flower_port}/")
        return f"ready: open {', '.join(places)}. Ctrl-C stops everything."


def build_processes(stack: Stack) -> dict[str, Process]:
    """name → process, not started. Order is start order."""
    env, logs = stack.env, stack.log_dir
    processes: dict[str, Process] = {}
    if stack.redis.private is not None:
        processes["redis"] = stack.redis.private
    if stack.mailbox is not None:
        processes["mail"] = DevMailbox(path=stack.mailbox.path, host=stack.mailbox.host,
                                       port=stack.mailbox.port, env=env,
                                       log_path=logs / "mail.log")  # fmt: skip
    processes["worker"] = CeleryWorker(env=env, log_path=logs / "worker.log", concurrency=None)
    processes["beat"] = CeleryBeat(env=env, log_path=logs / "beat.log")
    processes["web"] = DaphneServer(host=stack.host, port=stack.port, env=env,
                                    log_path=logs / "web.log")  # fmt: skip
    if stack.flower_port is not None:
        processes["flower"] = Flower(host=stack.host, port=stack.flower_port, env=env,
                                     log_path=logs / "flower.log")  # fmt: skip
    return processes


class Printer:
    """Each line as ``12:00:01 name | text``; a lock keeps lines whole."""

    def __init__(self, names: list[str], out=sys.stdout) -> None:
        self.width = max(len(name) for name in [*names, "system"])
        self.out = out
        self._lock = threading.Lock()

    def line(self, name: str, text: str) -> None:
        with self._lock:
            self.out.write(f"{datetime.now():%H:%M:%S} {name:<{self.width}} | {text}\n")
            self.out.flush()

    def echo_for(self, name: str):
        return lambda text: self.line(name, text)


# Set by SIGINT or SIGTERM. The handler only notes the signal: an exception raised
# from a handler lands wherever the main thread is, even in code that ignores it.
STOP = {"signal": 0}
STOPPING = threading.Event()


def _note_stop(signum, frame) -> None:
    STOP["signal"] = STOP["signal"] or signum
    STOPPING.set()


def run_stack(stack: Stack) -> int:
    """Start every process; then wait until one exits or a signal comes (a start
    under way finishes first); stop them all."""
    processes = build_processes(stack)
    printer = Printer(list(processes))
    started: list[tuple[str, Process]] = []
    returncode = 1
    try:
        # Redis first (the others connect at start-up), then the rest side by side.
        for name, process in processes.items():
            process.echo = printer.echo_for(name)
            started.append((name, process))
            process.start(wait=name == "redis")
        for name, process in started:
            if STOPPING.is_set():
                break
            process.wait_ready()
            printer.line("system", f"{name} started (pid={process.pid})")
        else:
            for _, process in started:
                process.flush_echo()
            printer.line("system", stack.where_to_open())
        while not STOPPING.wait(0.2):
            exited = [(name, p) for name, p in started if not p.running]
            if exited:
                name, process = exited[0]
                printer.line("system", f"{name} stopped (rc={process.proc.returncode})")
                break
    except StartError as error:
        printer.line("system", str(error))
    finally:
        if STOP["signal"]:
            printer.line("system", f"{signal.Signals(STOP['signal']).name} received")
            returncode = 128 + STOP["signal"]
        for name, process in reversed(started):
            if process.proc is not None:
                printer.line("system", f"stopping {name} (pid={process.pid})")
            process.stop(timeout=STOP_TIMEOUT)
    return returncode


def main() -> int:
    signal.signal(signal.SIGINT, _note_stop)
    signal.signal(signal.SIGTERM, _note_stop)
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    redis = resolve_redis()
    redis_prefix = resolve_redis_prefix()
    mailbox = resolve_mailbox()
    env = dict(os.environ, REDIS_URL=redis.url, REDIS_PREFIX=redis_prefix, PYTHONUNBUFFERED="1")
    if mailbox is not None:
        env.update(mailbox.app_env())
    # The venv's bin first, so `daphne` and `celery` resolve even if it is not activated.
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    stack = Stack(
        host=host, port=port, redis=redis, env=env, mailbox=mailbox, flower_port=resolve_flower()
    )
    for old in LOG_DIR.glob("*.log"):
        old.unlink()

    try:
        print(f"Redis: {redis.url} ({redis.source})", flush=True)
        print(f"       keys, queues and channels under {redis_prefix}: (REDIS_PREFIX)", flush=True)
        print(f"Web:   {stack.url}", flush=True)
        if mailbox is not None:
            print(
                f"Mail:  SMTP on {mailbox.host}:{mailbox.port}, see {stack.url}outbox/", flush=True
            )
        if stack.flower_port is not None:
            print(f"Flower: http://{host}:{stack.flower_port}/", flush=True)
        print(f"Logs:  {LOG_DIR}/", flush=True)
        return run_stack(stack)
    finally:
        if redis.private is not None:
            redis.private.close()


if __name__ == "__main__":
    sys.exit(main())
