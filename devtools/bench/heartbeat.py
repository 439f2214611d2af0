"""What the heartbeat costs one daphne holding many idle status sockets.

    python -m devtools.bench.heartbeat                 # 10,000 sockets, 30 s per measure
    python -m devtools.bench.heartbeat --sockets 500 --seconds 5

Starts the stack (Redis, database, daphne with production settings), opens the
sockets from a separate process (``--clients``: page sockets on /ws/watch/,
idle, as a page that watches nothing final yet keeps its socket), then reads
daphne's CPU time from /proc over the window, once with the heartbeat at its
default interval and once with it pushed out of the window; prints both.
"""

import argparse
import asyncio
import os
import subprocess
import sys
import time

from devtools.bench.stack import BenchStack, raise_nofile_limit

HEARTBEAT_SECONDS = 5
OFF_SECONDS = 3600  # no heartbeat within the window


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


async def hold_sockets(base_url: str, count: int, concurrency: int = 100) -> None:
    """The client side: open ``count`` page sockets, say so, hold them until stdin closes."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidHandshake, InvalidMessage

    url = base_url.replace("http://", "ws://", 1) + "/ws/watch/"
    gate = asyncio.Semaphore(concurrency)
    sockets = []

    async def open_one() -> None:
        async with gate:
            for attempt in range(5):  # a handshake dropped while daphne is busy: try again
                try:
                    sockets.append(
                        await connect(url, origin=base_url, ping_interval=None, max_queue=None,
                                      compression=None, open_timeout=60)
                    )  # fmt: skip
                    return
                except (OSError, TimeoutError, InvalidHandshake, InvalidMessage):
                    await asyncio.sleep(0.5 * (attempt + 1))

    await asyncio.gather(*(open_one() for _ in range(count)))
    print(f"open {len(sockets)}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for ws in sockets:
        ws.transport.abort()


def measure(stack: BenchStack, *, sockets: int, seconds: float, heartbeat: float) -> float:
    daphne = stack.start_daphne(
        REALTIME_HEARTBEAT_SECONDS=heartbeat, REALTIME_SILENCE_SECONDS=heartbeat * 2
    )
    clients = subprocess.Popen(
        [sys.executable, "-m", "devtools.bench.heartbeat", "--clients", daphne.url,
         "--sockets", str(sockets)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = clients.stdout.readline().strip()
        if line != f"open {sockets}":
            raise RuntimeError(f"asked for {sockets} sockets, the clients said {line!r}")
        time.sleep(max(2.0, heartbeat if heartbeat < OFF_SECONDS else 0))  # settle
        before, started = cpu_seconds(daphne.pid), time.monotonic()
        time.sleep(seconds)
        used = cpu_seconds(daphne.pid) - before
        return 100 * used / (time.monotonic() - started)
    finally:
        clients.stdin.close()
        clients.wait(30)
        stack.stop_daphne()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--clients", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    raise_nofile_limit()
    if args.clients:
        asyncio.run(hold_sockets(args.clients, args.sockets))
        return
    with BenchStack() as stack:  # started on entering
        off = measure(stack, sockets=args.sockets, seconds=args.seconds, heartbeat=OFF_SECONDS)
        on = measure(stack, sockets=args.sockets, seconds=args.seconds, heartbeat=HEARTBEAT_SECONDS)
    print(f"daphne CPU with {args.sockets:,} idle page sockets over {args.seconds:g} s: "
          f"{off:.1f} % without heartbeat, {on:.1f} % with one every {HEARTBEAT_SECONDS} s "
          f"(cost: {on - off:.1f} % of one core)")  # fmt: skip


if __name__ == "__main__":
    main()
