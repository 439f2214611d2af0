"""The whole stack in one terminal: ``python -m devtools.run`` (what ``make run`` starts).

honcho's Manager runs every process, prefixes their output, and on Ctrl-C or
SIGTERM stops each process group (SIGTERM, then SIGKILL after 5 s); when one
process exits, the others are stopped too.

Redis: ``REDIS_URL`` when set; else a private redis-server on a free port (see
``devtools.redis_server``), never a Redis that happens to answer at 6379: another
checkout or project there would take this stack's tasks. Either way every key,
queue and channel goes under ``REDIS_PREFIX`` (by default a name of this
checkout), which the banner states.

Mail: ``EMAIL_HOST`` when set; else a local SMTP server (``manage.py mailbox``)
on a free port, storing what it receives for the debug-only Outbox page.

Flower, Celery's monitor, when ``FLOWER=1`` (on ``FLOWER_PORT``, 5555).

To add a process, add an entry in ``build_processes``.
"""

import os
import queue
import re
import shlex
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from honcho.manager import SYSTEM_PRINTER_NAME, Manager
from honcho.printer import Message, Printer

from devtools.ports import free_port, wait_for_port
from devtools.redis_server import RedisServer
from django_celery.redis_prefix import checkout_prefix

REPO_ROOT = Path(__file__).resolve().parent.parent
# Where the development mailbox stores mail unless DEV_MAILBOX says otherwise (as in settings).
DEFAULT_MAILBOX = REPO_ROOT / "var" / "mailbox.jsonl"
# Celery retries the broker on its own, but waiting first keeps the log free of
# connection errors while the private Redis boots.
REDIS_WAIT_SECONDS = 30


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
    python: str = sys.executable
    env: dict[str, str] = field(default_factory=dict)
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


def _after_redis(stack: Stack, command: str) -> str:
    parts = urlsplit(stack.redis.url)
    if stack.redis.private is None or parts.hostname is None:
        return f"exec {command}"
    wait = shlex.join(
        [stack.python, "-m", "devtools.ports", "wait", parts.hostname, str(parts.port or 6379),
         "--timeout", str(REDIS_WAIT_SECONDS)]
    )  # fmt: skip
    return f"{wait} && exec {command}"


def build_processes(stack: Stack) -> dict[str, str]:
    """name → shell command. Order is start order and log colour order."""
    py = shlex.quote(stack.python)
    processes: dict[str, str] = {}
    if stack.redis.private is not None:
        processes["redis"] = "exec " + shlex.join(stack.redis.private.command())
    if stack.mailbox is not None:
        processes["mail"] = "exec " + shlex.join(
            [stack.python, str(REPO_ROOT / "manage.py"), "mailbox", "--host", stack.mailbox.host,
             "--port", str(stack.mailbox.port), "--file", str(stack.mailbox.path)]
        )  # fmt: skip
    processes["worker"] = _after_redis(
        stack, f"{py} -m celery -A django_celery worker --loglevel=INFO"
    )
    processes["beat"] = _after_redis(stack, f"{py} -m celery -A django_celery beat --loglevel=INFO")
    processes["web"] = (
        f"exec {py} -m daphne -b {shlex.quote(stack.host)} -p {stack.port} "
        "django_celery.asgi:application"
    )
    if stack.flower_port is not None:
        processes["flower"] = _after_redis(
            stack,
            f"{py} -m celery -A django_celery flower "
            f"--address={shlex.quote(stack.host)} --port={stack.flower_port}",
        )
    return processes


class StackManager(Manager):
    """honcho's Manager, safe against a Ctrl-C that lands while processes start.

    honcho 2.0's signal handler reads every process's pid, which it learns from
    a "start" message; a signal before all have arrived raised KeyError and left
    the processes running. Here signals wait until every pid is known.
    """

    START_TIMEOUT = 30

    def _start(self) -> None:
        received: list[int] = []
        stop_signals = (signal.SIGINT, signal.SIGTERM)
        saved = {sig: signal.signal(sig, lambda signum, frame: received.append(signum))
                 for sig in stop_signals}  # fmt: skip
        try:
            super()._start()
            self._wait_for_pids()
        finally:
            for sig, handler in saved.items():
                signal.signal(sig, handler)
        if received:
            saved[received[0]](received[0], None)

    def _wait_for_pids(self) -> None:
        deadline = time.monotonic() + self.START_TIMEOUT
        held = []
        while not self._all_started() and time.monotonic() < deadline:
            try:
                message = self.events.get(timeout=0.1)
            except queue.Empty:
                continue
            if message.type == "start":
                self._processes[message.name]["pid"] = message.data["pid"]
                self._system_print(f"{message.name} started (pid={message.data['pid']})\n")
            elif message.type == "line":
                self._printer.write(message)
            else:
                held.append(message)
        for message in held:  # "stop": the loop's business
            self.events.put(message)


class WatchingPrinter(Printer):
    """honcho's Printer, which also notices when the worker says it is ready.

    Two threads write (the manager's loop and the announcement): a lock keeps
    their lines whole.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.worker_ready = threading.Event()
        self._lock = threading.Lock()

    def write(self, message: Message) -> None:
        with self._lock:
            super().write(message)
        if message.type == "line" and message.name == "worker":
            data = message.data
            text = data.decode(errors="replace") if isinstance(data, bytes) else data
            if WORKER_READY.search(text):
                self.worker_ready.set()


# Celery's "celery@host ready." once the worker consumes from its queues.
WORKER_READY = re.compile(r"@\S+ ready\.")
READY_TIMEOUT = 120


def _announce_when_ready(stack: Stack, printer: WatchingPrinter) -> None:
    """Print ``stack.where_to_open()`` once the web (and Flower) listen and the
    worker is ready, so it comes after the start-up banners."""

    def announce() -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        ports = [stack.port] + ([stack.flower_port] if stack.flower_port is not None else [])
        try:
            for port in ports:
                wait_for_port(stack.host, port, timeout=max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            return
        printer.worker_ready.wait(timeout=max(0.1, deadline - time.monotonic()))
        printer.write(
            Message(
                type="line",
                data=stack.where_to_open() + "\n",
                time=datetime.now(),
                name=SYSTEM_PRINTER_NAME,
                colour=None,
            )
        )

    threading.Thread(target=announce, daemon=True).start()


def main() -> int:
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

    printer = WatchingPrinter(sys.stdout)
    manager = StackManager(printer)
    for name, command in build_processes(stack).items():
        manager.add_process(name, command, env=stack.env)

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
        _announce_when_ready(stack, printer)
        manager.loop()
    except KeyboardInterrupt:
        return 130  # Ctrl-C before honcho took over signals: nothing was started yet
    finally:
        if redis.private is not None:
            redis.private.close()  # only removes its temp dir: honcho ran the process
    return manager.returncode or 0


if __name__ == "__main__":
    sys.exit(main())
