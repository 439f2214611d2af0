"""The whole stack in one terminal: ``python -m devtools.run`` (what ``make run`` starts).

It starts the processes of ``devtools.processes`` (Redis first, once it answers
the rest side by side), prints their output prefixed by name (each also has a
log in ``var/log/``), and on Ctrl-C or SIGTERM, or when one of them exits, stops
them all, last first.

Redis: ``REDIS_URL`` when set; else a private redis-server on a free port, never
a Redis that happens to answer at 6379: another checkout there would take this
stack's tasks. Every key goes under ``REDIS_PREFIX`` (by default a name of this
checkout). Mail: ``EMAIL_HOST`` when set; else the Outbox's SMTP server
(``manage.py mailbox``) on a free port. Flower when ``FLOWER=1`` (``FLOWER_PORT``).
"""

import os
import signal
import sys
import threading
from dataclasses import dataclass
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
DEFAULT_MAILBOX = REPO_ROOT / "var" / "mailbox.jsonl"  # as settings.DEV_MAILBOX
LOG_DIR = REPO_ROOT / "var" / "log"
STOP_TIMEOUT = 5


@dataclass
class RedisChoice:
    url: str
    private: RedisServer | None = None  # set when we start our own

    @property
    def source(self) -> str:
        return f"private redis-server ({self.private.binary})" if self.private else "REDIS_URL"


def resolve_redis(environ=os.environ) -> RedisChoice:
    """Which Redis the stack uses; a ``RedisChoice.private`` server is not started yet."""
    if url := environ.get("REDIS_URL", "").strip():
        return RedisChoice(url=url)
    server = RedisServer()
    return RedisChoice(url=server.url, private=server)


def resolve_redis_prefix(environ=os.environ) -> str:
    """What every process of the stack puts before its Redis keys (settings.REDIS_PREFIX)."""
    return environ.get("REDIS_PREFIX", "").strip() or checkout_prefix(REPO_ROOT)


@dataclass(frozen=True)
class Mailbox:
    """The Outbox's SMTP server, which the stack starts when no EMAIL_HOST is given."""

    port: int
    path: Path
    host: str = "127.0.0.1"

    def app_env(self) -> dict[str, str]:
        """What the worker and web need to send to it, and the web to read it."""
        return {"EMAIL_HOST": self.host, "EMAIL_PORT": str(self.port),
                "DEV_MAILBOX": str(self.path), "DEV_MAILBOX_IN_USE": "1"}  # fmt: skip


def resolve_mailbox(environ=os.environ) -> Mailbox | None:
    if environ.get("EMAIL_HOST", "").strip():
        return None  # a real mail server is configured
    return Mailbox(port=free_port(), path=Path(environ.get("DEV_MAILBOX", "") or DEFAULT_MAILBOX))


def resolve_flower(environ=os.environ) -> int | None:
    """Flower's port when ``FLOWER`` is on, else None (off by default)."""
    if environ.get("FLOWER", "").strip().lower() not in {"1", "true", "yes", "on"}:
        return None
    return int(environ.get("FLOWER_PORT", "5555"))


@dataclass
class Stack:
    host: str
    port: int
    redis: RedisChoice
    env: dict[str, str] | None = None
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
    env, host = stack.env, stack.host
    processes: dict[str, Process] = {}
    if stack.redis.private is not None:
        processes["redis"] = stack.redis.private
    if (mail := stack.mailbox) is not None:
        processes["mail"] = DevMailbox(path=mail.path, host=mail.host, port=mail.port, env=env,
                                       log_path=LOG_DIR / "mail.log")  # fmt: skip
    processes["worker"] = CeleryWorker(env=env, log_path=LOG_DIR / "worker.log", concurrency=None)
    processes["beat"] = CeleryBeat(env=env, log_path=LOG_DIR / "beat.log")
    processes["web"] = DaphneServer(host=host, port=stack.port, env=env,
                                    log_path=LOG_DIR / "web.log")  # fmt: skip
    if stack.flower_port is not None:
        processes["flower"] = Flower(host=host, port=stack.flower_port, env=env,
                                     log_path=LOG_DIR / "flower.log")  # fmt: skip
    return processes


# Set by SIGINT or SIGTERM. The handler only notes the signal: an exception raised
# from a handler lands wherever the main thread is, even in code that ignores it.
STOP = {"signal": 0}
STOPPING = threading.Event()
PRINTING = threading.Lock()


def note_stop(signum, frame) -> None:
    STOP["signal"] = STOP["signal"] or signum
    STOPPING.set()


def say(name: str, text: str) -> None:
    """A line as ``12:00:01 name   | text``; the lock keeps lines whole."""
    with PRINTING:
        print(f"{datetime.now():%H:%M:%S} {name:<6} | {text}", flush=True)


def run_stack(stack: Stack) -> int:
    """Start every process; then wait until one exits or a signal comes (a start
    under way finishes first); stop them all."""
    started: list[tuple[str, Process]] = []
    try:
        # Redis first (the others connect at start-up), then the rest side by side.
        for name, process in build_processes(stack).items():
            process.echo = lambda text, name=name: say(name, text)
            started.append((name, process))
            process.start(wait=name == "redis")
        for name, process in started:
            if STOPPING.is_set():
                break
            process.wait_ready()
            say("system", f"{name} started (pid={process.pid})")
        else:
            for _, process in started:
                process.flush_echo()
            say("system", stack.where_to_open())
        while not STOPPING.wait(0.2):
            if exited := [(name, p) for name, p in started if not p.running]:
                say("system", f"{exited[0][0]} stopped (rc={exited[0][1].proc.returncode})")
                break
    except StartError as error:
        say("system", str(error))
    finally:
        if STOP["signal"]:
            say("system", f"{signal.Signals(STOP['signal']).name} received")
        for name, process in reversed(started):
            if process.proc is not None:
                say("system", f"stopping {name} (pid={process.pid})")
            process.stop(timeout=STOP_TIMEOUT)
    return 128 + STOP["signal"] if STOP["signal"] else 1


def main() -> int:
    signal.signal(signal.SIGINT, note_stop)
    signal.signal(signal.SIGTERM, note_stop)
    redis, prefix, mailbox = resolve_redis(), resolve_redis_prefix(), resolve_mailbox()
    env = dict(os.environ, REDIS_URL=redis.url, REDIS_PREFIX=prefix, PYTHONUNBUFFERED="1")
    env.update(mailbox.app_env() if mailbox else {})
    # The venv's bin first, so `daphne` and `celery` resolve even if it is not activated.
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    host, port = os.environ.get("HOST", "127.0.0.1"), int(os.environ.get("PORT", "8000"))
    stack = Stack(host, port, redis, env, mailbox, resolve_flower())
    for old in LOG_DIR.glob("*.log"):
        old.unlink()
    try:
        print(f"Redis: {redis.url} ({redis.source})")
        print(f"       keys, queues and channels under {prefix}: (REDIS_PREFIX)")
        print(f"Web:   {stack.url}")
        if mailbox is not None:
            print(f"Mail:  SMTP on {mailbox.host}:{mailbox.port}, see {stack.url}outbox/")
        if stack.flower_port is not None:
            print(f"Flower: http://{host}:{stack.flower_port}/")
        print(f"Logs:  {LOG_DIR}/", flush=True)
        return run_stack(stack)
    finally:
        if redis.private is not None:
            redis.private.close()


if __name__ == "__main__":
    sys.exit(main())
