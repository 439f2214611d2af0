"""The bench's SMTP sink, in its own process: ``python -m devtools.bench.sink PORT FILE``.

A real SMTP server (aiosmtpd) on 127.0.0.1 that accepts everything and appends
one JSON line per recipient to FILE: ``[time.time() when accepted, recipient]``.
Its own process, so its CPU is read apart from the app's and the generator's.
"""

import json
import signal
import sys
import threading
import time

from aiosmtpd.controller import Controller


class Arrivals:
    def __init__(self, path: str) -> None:
        self.out = open(path, "a", buffering=1)  # noqa: SIM115 (open for the process's life)

    async def handle_DATA(self, server, session, envelope) -> str:
        now = time.time()
        self.out.write("".join(json.dumps([now, rcpt]) + "\n" for rcpt in envelope.rcpt_tos))
        return "250 OK"


def main() -> None:
    port, path = int(sys.argv[1]), sys.argv[2]
    controller = Controller(Arrivals(path), hostname="127.0.0.1", port=port, ready_timeout=10)
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
