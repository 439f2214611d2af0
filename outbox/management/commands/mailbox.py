"""``python manage.py mailbox``: the development SMTP server that feeds the Outbox.

An aiosmtpd server on 127.0.0.1 that appends every message it receives to
``settings.DEV_MAILBOX`` (``--file`` overrides), one JSON line each, until
SIGINT or SIGTERM. ``make run`` starts it when ``EMAIL_HOST`` is unset.
"""

import signal
import threading
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from outbox.mailbox import serve


class Command(BaseCommand):
    help = "Run a local SMTP server that stores every message for the Outbox page."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8025)
        parser.add_argument("--file", type=Path, default=None, help="default: DEV_MAILBOX")

    def handle(self, *args, host: str, port: int, file: Path | None, **options) -> None:
        path = file or Path(settings.DEV_MAILBOX)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        controller = serve(host=host, port=port, path=path)
        self.stdout.write(f"mailbox: SMTP on {host}:{port}, storing mail in {path}")
        self.stdout.flush()
        try:
            stop.wait()
        finally:
            controller.stop()
