"""The bench's clients, in their own process: ``python -m devtools.bench.load MODE URL OPTIONS``.

``submit``: open-loop submissions. Arrival times are a Poisson process drawn in
advance from a seed; each is sent at its intended time by one of ``sessions``
visitors (own cookies, one connection, as a browser tab) and timed from that
intended time, so a stall counts against every request it delays. With
``watch`` each visitor's page opens its one status socket (/ws/watch/) and
sends "watch feedback/<token> <version>" for every submission (the version its
answer shows), as static/js/live.js does. With ``tutorial`` (the baseline,
devtools/bench/baseline) each visitor posts the plain form and follows its redirect
to the success page: both requests are its answer, coded by the POST's status (302).

``hold``: one page socket per token, each watching it as a page does, naming the
version its card shows; counted open once the watch is taken (see ``taken``). Says
how fast they opened, then notes when each gets its next frame, until stdin closes.
With ``probe_cost`` N, first N more probes on every socket when stdin gives a line.

``probe``: one page socket watching the tokens given, noting every frame's
time and version, and one poller asking for a token's status at the app's
polling interval; says "delivered" once the last versions named on stdin
(one JSON line) showed, and stops when stdin closes.

OPTIONS is one JSON object (the keys of ``OPTIONS`` below). Every mode prints one JSON
object on stdout (``hold`` and ``probe`` print a line first).
"""

import argparse
import asyncio
import contextlib
import json
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from devtools.http_client import CSRF_INPUT, watch_token

HEARTBEAT = "<!--heartbeat-->"  # realtime.consumers.HEARTBEAT, without importing the app
REFUSED = "refused"  # realtime.consumers.REFUSED
# A watch the consumer refuses at once: no signature matches the token, so it is turned
# away on the event loop, without a database read (realtime.watch.group_for).
PROBE = "feedback/-"
SESSION_CHANGED = 4401  # realtime.consumers.CLOSE_SESSION_CHANGED: reconnect with the new cookie
SESSION_CHANGED_LIMIT = 5  # as static/js/live.js: then the page polls
# The options a mode reads, with their defaults. spec (hold, probe): a JSON file with the
# session's cookies, the tokens to watch, the version of each as its card shows it (hold)
# and (probe) the one to poll. budget (hold): seconds to open the sockets in, at most.
# probe_cost (hold): then that many probes on each socket, alone. until_stdin_closes
# (submit): a background load.
OPTIONS = {"rate": 50, "seconds": 10, "sessions": 50, "seed": 0, "tag": "s", "watch": False,
           "linger": 0.5, "until_stdin_closes": False, "spec": None, "concurrency": 100,
           "budget": 600, "tutorial": False, "probe_cost": 0}  # fmt: skip
POLL_INTERVAL = 2.0  # seconds: as the status page polls (templates/feedback/detail.html)


def frame_version(html: str) -> int | None:
    match = re.search(r'data-version="(\d+)"', html)
    return int(match.group(1)) if match else None


def frame_id(html: str) -> str | None:
    match = re.search(r'id="status-([0-9a-f-]+)"', html)
    return match.group(1) if match else None


def watch_command(token: str, shown: int | None) -> str:
    """As static/js/live.js words it: the version the card shows, when it shows one."""
    return f"watch feedback/{token}" + ("" if shown is None else f" {shown}")


async def page_socket(base_url: str, cookies: dict[str, str]):
    cookie = "; ".join(f"{name}={value}" for name, value in cookies.items())
    return await connect(
        base_url.replace("http://", "ws://", 1) + "/ws/watch/",
        origin=base_url, additional_headers={"Cookie": cookie}, open_timeout=60,
        close_timeout=2, ping_interval=None, max_queue=None, compression=None,
    )  # fmt: skip


class Visitor:
    def __init__(self, base_url: str, *, watch: bool, tutorial: bool = False) -> None:
        self.base_url, self.watch, self.tutorial = base_url, watch, tutorial
        limits = httpx.Limits(max_connections=1)
        self.http = httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits)
        self.csrf, self.socket, self.reader, self.frames, self.refused = "", None, None, 0, 0
        # token -> [id, version its card shows], not final: watched again on reconnect.
        self.pending: dict[str, list] = {}
        self.reconnects, self.session_changes, self.turned_away = 0, 0, False
        self.socket_errors, self.opening = Counter(), asyncio.Lock()

    async def open_form(self) -> None:
        page = await self.http.get("/")
        self.csrf = CSRF_INPUT.search(page.text).group(1)

    async def read(self, socket) -> None:
        with contextlib.suppress(ConnectionClosed):  # aborted at the end
            async for message in socket:
                if message.startswith(REFUSED):
                    self.refused += 1
                elif message != HEARTBEAT:
                    self.frames += 1
                    self.session_changes = 0
                    self.swap(message)
        if socket.close_code == SESSION_CHANGED:
            await self.reconnect()

    def swap(self, frame: str) -> None:
        """The card the frame is for now shows its version; a final one needs no watch again."""
        shown, version = frame_id(frame), frame_version(frame)
        for token, card in list(self.pending.items()):
            if card[0] == shown:
                if 'data-final="true"' in frame:
                    del self.pending[token]
                elif version is not None and (card[1] is None or version > card[1]):
                    card[1] = version

    async def open_socket(self) -> None:
        self.socket = await page_socket(self.base_url, dict(self.http.cookies.items()))
        self.reader = asyncio.create_task(self.read(self.socket))

    async def reconnect(self) -> None:
        """Closed 4401 (the session got a new key after the handshake): as live.js, open
        another socket with the current cookie at once (backing off if that one is closed
        so too) and send every pending watch again."""
        self.reconnects += 1
        self.session_changes += 1
        try:
            async with self.opening:
                self.socket = None
                if self.session_changes > SESSION_CHANGED_LIMIT:
                    self.turned_away = True
                    return
                if self.session_changes > 1:
                    await asyncio.sleep(2 ** (self.session_changes - 2) * random.uniform(0.5, 1))
                await self.open_socket()
                for token, (_, shown) in list(self.pending.items()):  # as live.js: what it shows
                    await self.socket.send(watch_command(token, shown))
        except Exception as error:  # counted, never hidden
            self.socket_errors[type(error).__name__] += 1

    async def submit(self, email: str) -> int:
        data = {"csrfmiddlewaretoken": self.csrf, "email": email, "message": "Open loop."}
        if self.tutorial:  # the redirect and its success page, as a browser follows it
            response = await self.http.post("/", data=data, follow_redirects=True)
            ok = response.history and response.status_code == 200
            return response.history[0].status_code if ok else response.status_code
        response = await self.http.post("/", data=data, headers={"HX-Request": "true"})
        if response.status_code == 200 and self.watch:
            card = response.text
            asyncio.create_task(
                self.watch_card(watch_token(card), frame_id(card), frame_version(card))
            )
        return response.status_code

    async def watch_card(self, token: str, feedback_id: str | None, shown: int | None) -> None:
        """Apart from the answer's latency: the page watches its card after the swap."""
        if self.turned_away:
            return  # the page polls
        self.pending[token] = [feedback_id, shown]
        try:
            async with self.opening:  # one socket per page, however many cards arrive at once
                if self.turned_away:
                    return
                if self.socket is None:  # the page opens its socket with its first card
                    await self.open_socket()
                socket = self.socket
            await socket.send(watch_command(token, shown))
        except ConnectionClosed as closed:
            if closed.rcvd is None or closed.rcvd.code != SESSION_CHANGED:
                self.socket_errors[type(closed).__name__] += 1
            # else: the reconnect sends it again
        except Exception as error:  # counted, never hidden
            self.socket_errors[type(error).__name__] += 1

    async def close(self) -> None:
        if self.socket is not None:
            self.socket.transport.abort()
        await self.http.aclose()


async def submit(args: argparse.Namespace) -> dict:
    rng = random.Random(args.seed)
    due, at = [], rng.expovariate(args.rate)
    while at < args.seconds:
        due.append(at)
        at += rng.expovariate(args.rate)
    visitors = [Visitor(args.url, watch=args.watch, tutorial=args.tutorial)
                for _ in range(args.sessions)]  # fmt: skip
    await asyncio.gather(*(visitor.open_form() for visitor in visitors))
    samples: list[list] = []
    cpu = time.process_time()
    start_wall, start = time.time() + 0.2, time.perf_counter() + 0.2

    stopped = asyncio.Event()
    if args.until_stdin_closes:  # a background load: it ends when the bench says so
        asyncio.create_task(stdin_closed()).add_done_callback(lambda _: stopped.set())

    async def one(index: int, offset: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopped.wait(), start + offset - time.perf_counter())
        if stopped.is_set():
            return  # never sent, so not counted
        try:
            code = await visitors[index % args.sessions].submit(f"{args.tag}-{index}@bench.test")
        except Exception as error:  # counted, never hidden
            code = type(error).__name__
        samples.append([start_wall + offset, time.perf_counter() - start - offset, code, index])

    await asyncio.gather(*(one(index, offset) for index, offset in enumerate(due)))
    await asyncio.sleep(args.linger)  # the frames of the last submissions
    result = {
        "samples": sorted(samples),
        "cpu_s": time.process_time() - cpu,
        "frames": sum(v.frames for v in visitors),
        "refused": sum(v.refused for v in visitors),
        "reconnects": sum(v.reconnects for v in visitors),  # closed 4401, then reopened
        "sockets": sum(1 for v in visitors if v.socket is not None),
        "socket_errors": dict(sum((v.socket_errors for v in visitors), Counter())),
    }
    await asyncio.gather(*(visitor.close() for visitor in visitors))
    return result


async def stdin_closed() -> None:
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def note_frames(ws, into: list, *, first: bool = False) -> None:
    """[time, feedback id, version] of each status frame on ``ws`` (the first only: ``first``)."""
    async for message in ws:
        if message != HEARTBEAT and not message.startswith("refused"):
            into.append([time.time(), frame_id(message), frame_version(message)])
            if first:
                return


async def taken(ws) -> list[str]:
    """Wait for the answer to the probe sent after a watch; what came before it of the watch's
    own (a refusal, a status frame): nothing when the watch was taken and its card showed the
    newest version. Heartbeats and the queue-wide event (a real page gets those too) are not.

    The probe's answer says the watch was handled: Channels hands a consumer one message at
    a time, in order (channels.utils.await_many_dispatch awaits each dispatch before it
    takes the next), so the watch's ``receive`` had returned, its group joined and its row
    read, before the probe's began.
    """
    before = []
    async for message in ws:
        if message == f"{REFUSED} {PROBE}":
            return before
        if message.startswith(REFUSED) or frame_id(message) is not None:
            before.append(message)
    raise ConnectionError("closed before the probe's answer")


async def hold(args: argparse.Namespace) -> dict:
    spec = json.loads(Path(args.spec).read_text())
    gate = asyncio.Semaphore(args.concurrency)
    sockets, errors, unasked = [], Counter(), []

    async def open_one(token: str, shown: int) -> None:
        async with gate:
            for _ in range(3):  # a handshake dropped while daphne is busy: counted, tried again
                ws = None
                try:
                    ws = await page_socket(args.url, spec["cookies"])
                    await ws.send(watch_command(token, shown))
                    await ws.send(f"watch {PROBE}")
                    before = await asyncio.wait_for(taken(ws), 60)
                except Exception as error:
                    errors[type(error).__name__] += 1
                    if ws is not None:
                        ws.transport.abort()
                    continue
                if any(message.startswith(REFUSED) for message in before):
                    errors["watch refused"] += 1  # not open, and asking again would not help
                    ws.transport.abort()
                    return
                unasked.extend(before)  # a frame the version named should have spared
                sockets.append(ws)
                return

    started = time.perf_counter()
    with contextlib.suppress(TimeoutError):  # what opened within the budget is what counts
        await asyncio.wait_for(asyncio.gather(*(open_one(token, shown) for token, shown
                                                in zip(spec["tokens"], spec["versions"],
                                                       strict=True))),
                               args.budget)  # fmt: skip
    print(json.dumps({"opened": len(sockets), "seconds": time.perf_counter() - started,
                      "errors": errors, "frames_on_open": len(unasked)}), flush=True)  # fmt: skip
    if args.probe_cost:  # the probe alone: more on each socket once stdin gives a line

        async def probe_again(ws) -> int:
            for _ in range(args.probe_cost):
                await ws.send(f"watch {PROBE}")
                await asyncio.wait_for(taken(ws), 60)
            return args.probe_cost

        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        answered = await asyncio.gather(*map(probe_again, sockets), return_exceptions=True)
        print(json.dumps({"probed": sum(a for a in answered if isinstance(a, int))}), flush=True)
    closed = asyncio.create_task(stdin_closed())  # after the probe's line: stdin read once
    arrivals: list[list] = []
    readers = [asyncio.create_task(note_frames(ws, arrivals, first=True)) for ws in sockets]
    # return_exceptions: a reader's end (cancelled below, or its socket closed) is a result,
    # retrieved when this is awaited, never an exception left unretrieved.
    all_read = asyncio.gather(*readers, return_exceptions=True)
    await asyncio.wait([closed, all_read], return_when=asyncio.FIRST_COMPLETED)
    print("delivered", flush=True)  # every socket has its frame (or the bench stopped us)
    await closed
    for task in readers:
        task.cancel()
    await all_read
    for ws in sockets:
        ws.transport.abort()
    return {"arrivals": arrivals}


async def probe(args: argparse.Namespace) -> dict:
    spec = json.loads(Path(args.spec).read_text())
    ws = await page_socket(args.url, spec["cookies"])
    for token in spec["tokens"]:
        await ws.send(f"watch feedback/{token}")
    frames: list[list] = []
    polls: list[list] = []

    async def poll() -> None:
        """What the page does while its socket is down: GET the status every interval."""
        async with httpx.AsyncClient(base_url=args.url, cookies=spec["cookies"]) as http:
            while True:
                asked = time.monotonic()
                page = await http.get(f"/feedback/{spec['poll']}/", headers={"HX-Request": "true"})
                polls.append([time.time(), frame_version(page.text)])
                await asyncio.sleep(max(0.0, POLL_INTERVAL - (time.monotonic() - asked)))

    def caught_up(wanted: dict) -> bool:
        newest: dict[str, int] = {}
        for _, fid, version in frames:
            newest[fid] = max(newest.get(fid, -1), version or -1)
        return all(newest.get(fid, -1) >= v for fid, v in wanted["frames"].items()) and any(
            (version or -1) >= wanted["poll"] for _, version in polls)  # fmt: skip

    tasks = [asyncio.create_task(note_frames(ws, frames)), asyncio.create_task(poll())]
    print("ready", flush=True)
    # The bench then names the last versions (a JSON line); "delivered" once they all showed.
    wanted = json.loads(await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline))
    closed = asyncio.create_task(stdin_closed())
    while not closed.done() and not caught_up(wanted):
        await asyncio.sleep(0.05)
    print("delivered", flush=True)
    await closed
    for task in tasks:
        task.cancel()
    ws.transport.abort()
    return {"frames": frames, "polls": polls}


def main() -> None:
    """``python -m devtools.bench.load MODE URL '{"rate": 50, ...}'`` (OPTIONS below)."""
    mode, url, given = sys.argv[1], sys.argv[2], json.loads(sys.argv[3] if sys.argv[3:] else "{}")
    args = argparse.Namespace(url=url, **{**OPTIONS, **given})
    from devtools.bench.stack import raise_nofile_limit

    raise_nofile_limit()
    print(json.dumps(asyncio.run({"submit": submit, "hold": hold, "probe": probe}[mode](args))))


if __name__ == "__main__":
    main()
