"""Loopback ports: pick a free one, wait until something listens on one.

Also a tiny command line, used by ``devtools.run`` to hold a process back until
Redis listens::

    python -m devtools.ports wait 127.0.0.1 6379 --timeout 30
"""

import argparse
import socket
import sys
import time


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float = 10.0, *, proc=None) -> None:
    """Block until ``host:port`` accepts a connection.

    Raises ``TimeoutError`` after ``timeout`` seconds, or ``RuntimeError`` at once
    if ``proc`` (a ``subprocess.Popen``) exits first: no point waiting for a
    server that has died.
    """
    deadline = time.monotonic() + timeout
    while True:
        if port_is_open(host, port):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"process {proc.pid} exited with code {proc.returncode} "
                f"before {host}:{port} accepted connections"
            )
        if time.monotonic() >= deadline:
            raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:g}s")
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.ports")
    sub = parser.add_subparsers(dest="command", required=True)
    wait = sub.add_parser("wait", help="wait until HOST:PORT accepts connections")
    wait.add_argument("host")
    wait.add_argument("port", type=int)
    wait.add_argument("--timeout", type=float, default=30.0)
    sub.add_parser("free", help="print a free port on 127.0.0.1")
    args = parser.parse_args(argv)

    if args.command == "free":
        print(free_port())
        return 0
    try:
        wait_for_port(args.host, args.port, args.timeout)
    except TimeoutError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
