"""The bench's scenarios. Each is bounded in count and time and returns a JSON-able dict.

Timestamps that cross processes (publisher → daphne → client, browser) are
``time.time()``: one machine, one clock. Latencies are computed afterwards,
never asserted.
"""

import asyncio
import contextlib
import json
import os
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from devtools.bench.clients import (
    AsyncVisitor,
    frame_version,
    open_watch,
    recv_status,
    status_of,
)
from devtools.bench.profile import Profiler
from devtools.bench.stack import (
    BenchStack,
    process_nofile_limit,
    process_open_files,
    process_rss_bytes,
)
from devtools.bench.stats import summarize_ms

_SERVER_TIMING = re.compile(r"dur=([0-9.]+)")
QUIET_SECONDS = 10.0  # scenario 3: no new delivery for this long after publishing ends it


@dataclass(frozen=True)
class Sizes:
    # 1. submit latency
    submit_clients: int = 50
    submit_seconds: float = 15.0
    paced_interval: float = 1.0  # each client's pause between submits in the paced phase
    send_delay: float = 3.0  # FEEDBACK_SEND_DELAY for both paths (the app's default)
    # 2. push latency
    push_updates: int = 1000
    push_interval: float = 0.02
    poll_interval: float = 0.5
    dom_updates: int = 100
    dom_interval: float = 0.05
    # 3. watchers
    watchers: tuple[int, ...] = (1000, 2000, 5000, 10000)
    connect_concurrency: int = 100
    connect_budget: float = 180.0  # seconds to open one step's sockets, at most
    deliver_budget: float = 60.0  # seconds for every update to arrive, at most
    # 4. throughput
    burst: int = 1000
    burst_clients: int = 50
    # (pool, concurrency, prefetch multiplier or None for the setting, worker env) per drain run
    drain_workers: tuple[tuple[str, int, int | None, dict[str, str]], ...] = (
        ("prefork", 2, None, {}),
        ("prefork", 2, 8, {}),
        ("prefork", 4, None, {}),
        ("prefork", 2, None, {"DATABASE_CONN_MAX_AGE": "600"}),
    )
    # 5. channel layers
    layers: tuple[str, ...] = ("core", "pubsub")
    # py-spy on daphne and the worker during the busiest phases (--profile)
    profile: bool = False


FULL = Sizes()
# Minutes, not a quarter hour: for before/after comparisons while tuning.
MEDIUM = Sizes(
    submit_seconds=5.0,
    push_updates=300,
    dom_updates=50,
    watchers=(1000, 2000),
    burst=300,
    drain_workers=(
        ("prefork", 2, None, {}),
        ("prefork", 2, None, {"DATABASE_CONN_MAX_AGE": "600"}),
    ),
)
SMOKE = Sizes(
    submit_clients=3,
    submit_seconds=1.0,
    paced_interval=0.25,
    send_delay=0.2,
    push_updates=20,
    push_interval=0.02,
    poll_interval=0.1,
    dom_updates=5,
    dom_interval=0.05,
    watchers=(20,),
    connect_concurrency=10,
    connect_budget=60.0,
    deliver_budget=30.0,
    burst=20,
    burst_clients=4,
    drain_workers=(("prefork", 2, None, {}),),
)


def _profiler(
    stack: BenchStack, sizes: Sizes, pid: int, name: str, *, subprocesses: bool = False
) -> Profiler | None:
    if not sizes.profile:
        return None
    out = stack.dir / f"profile-{name}.txt"
    return Profiler(pid, out, subprocesses=subprocesses).start()


def _rows(tag: str):
    from feedback.models import Feedback

    return Feedback.objects.filter(email__startswith=f"{tag}-")


def _messages_for(stack: BenchStack, tag: str) -> list:
    return [m for m in stack.smtp.messages if any(r.startswith(f"{tag}-") for r in m.rcpt_tos)]


# -- 1. Submit latency ---------------------------------------------------------------------


async def submit_phase(
    base_url: str,
    *,
    tag: str,
    clients: int,
    duration: float,
    mode: str,
    interval: float | None = None,
) -> dict:
    """``clients`` visitors submitting for ``duration`` s: back to back, or one per ``interval``.

    A request under way when time is up finishes and counts; no new one starts.
    """
    visitors = [AsyncVisitor(base_url, timeout=120) for _ in range(clients)]
    latencies: list[float] = []
    server_ms: list[float] = []
    codes: Counter = Counter()
    statuses: Counter = Counter()
    errors: Counter = Counter()
    try:
        await asyncio.gather(*(visitor.open_form() for visitor in visitors))
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + duration

        async def run(index: int, visitor: AsyncVisitor) -> None:
            next_at = started + (interval * index / clients if interval else 0.0)
            number = 0
            while True:
                if interval:
                    if next_at >= deadline:
                        return
                    await asyncio.sleep(max(0.0, next_at - loop.time()))
                    next_at = max(next_at + interval, loop.time())
                elif loop.time() >= deadline:
                    return
                number += 1
                try:
                    response, seconds = await visitor.submit(
                        email=f"{tag}-{index}-{number}@bench.test",
                        message=f"Bench message {number} from client {index}.",
                        mode=mode,
                    )
                except httpx.HTTPError as error:
                    errors[type(error).__name__] += 1
                    continue
                codes[response.status_code] += 1
                if response.status_code != 200:
                    continue
                latencies.append(seconds)
                try:
                    statuses[status_of(response.text)] += 1
                except AssertionError:
                    statuses["(no status)"] += 1
                timing = _SERVER_TIMING.search(response.headers.get("server-timing", ""))
                if timing:
                    server_ms.append(float(timing.group(1)) / 1000)

        await asyncio.gather(*(run(index, visitor) for index, visitor in enumerate(visitors)))
        elapsed = loop.time() - started
    finally:
        await asyncio.gather(*(visitor.aclose() for visitor in visitors))
    return {
        "mode": mode,
        "clients": clients,
        "duration": duration,
        "interval": interval,
        "elapsed": elapsed,
        "ok": len(latencies),
        "rps": len(latencies) / elapsed if elapsed else 0.0,
        "latency_ms": summarize_ms(latencies),
        "server_ms": summarize_ms(server_ms),
        "codes": {str(code): count for code, count in codes.items()},
        "statuses": dict(statuses),
        "errors": dict(errors),
    }


def _warm_up(base_url: str) -> None:
    """A few unmeasured submissions first: a fresh daphne compiles regexes (the
    email validator's takes most of a second), loads templates and opens its
    connections on its first requests, which would otherwise land in the tail."""
    asyncio.run(submit_phase(base_url, tag="warm", clients=2, duration=1.0, mode="async"))


def scenario_submit(stack: BenchStack, sizes: Sizes) -> dict:
    delay = sizes.send_delay
    stack.start_worker(FEEDBACK_SEND_DELAY=delay)
    daphne = stack.start_daphne(FEEDBACK_SEND_DELAY=delay)
    phases: dict[str, dict] = {}
    common = {"clients": sizes.submit_clients, "duration": sizes.submit_seconds}
    _warm_up(daphne.url)
    profiler = _profiler(stack, sizes, daphne.pid, "daphne-submit")
    phases["async"] = asyncio.run(submit_phase(daphne.url, tag="s1a", mode="async", **common))
    profiles = (
        {"daphne while answering submissions back to back": profiler.stop()} if profiler else {}
    )
    phases["async_paced"] = asyncio.run(
        submit_phase(daphne.url, tag="s1p", mode="async", interval=sizes.paced_interval, **common)
    )
    # The old way needs no worker; stop it so its backlog takes no CPU from the requests.
    stack.stop_worker()
    phases["sync"] = asyncio.run(submit_phase(daphne.url, tag="s1s", mode="sync", **common))
    stack.stop_daphne()
    for tag, name in (("s1a", "async"), ("s1p", "async_paced"), ("s1s", "sync")):
        phases[name]["rows"] = _rows(tag).count()
    phases["sync"]["emails"] = len(_messages_for(stack, "s1s"))
    sync_p50 = phases["sync"]["latency_ms"].get("p50")
    async_p50 = phases["async"]["latency_ms"].get("p50")
    return {
        "send_delay": delay,
        "phases": phases,
        "profiles": profiles,
        "sync_over_async_p50": (sync_p50 / async_p50) if sync_p50 and async_p50 else None,
    }


# -- Watchable feedback, prepared directly in the database ----------------------------------


@dataclass
class Watchables:
    cookies: dict[str, str]
    items: list[tuple[str, str]] = field(default_factory=list)  # (feedback id, token)


def prepare_watchables(count: int, *, tag: str) -> Watchables:
    """``count`` feedback rows and one browser session allowed to watch them all.

    Rows are made in bulk (no task queued): the scenarios that use them measure
    watching, not submitting. The tokens are the app's own, bound to the session.
    """
    from importlib import import_module

    from django.conf import settings

    from feedback.models import Feedback
    from feedback.tokens import feedback_token

    session = import_module(settings.SESSION_ENGINE).SessionStore()
    rows = [
        Feedback(email=f"{tag}-{index}@bench.test", message="Watching.") for index in range(count)
    ]
    Feedback.objects.bulk_create(rows, batch_size=500)
    items = [(str(row.pk), feedback_token(row.pk, session=session)) for row in rows]
    session.save()
    return Watchables(cookies={settings.SESSION_COOKIE_NAME: session.session_key}, items=items)


async def run_publisher(args: list[str], *, env: dict[str, str], timeout: float) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "devtools.bench.publisher", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        raise RuntimeError(f"publisher exited {process.returncode}: {output.decode()[-3000:]}")


# -- 2. Push latency --------------------------------------------------------------------------


def _first_seen(seen: list[tuple[float, int]], version: int) -> float | None:
    """When a client first showed ``version`` or newer (seen: (time, version), in time order)."""
    for at, shown in seen:
        if shown >= version:
            return at
    return None


async def push_phase(
    base_url: str, watch: Watchables, sizes: Sizes, *, env: dict[str, str], workdir: Path
) -> dict:
    feedback_id, token = watch.items[0]
    ws = await open_watch(base_url, token, cookies=watch.cookies)
    frames: list[tuple[float, int]] = [(time.time(), frame_version(await recv_status(ws)))]
    polls: list[tuple[float, int]] = []
    stop_polling = asyncio.Event()

    async def read_frames() -> None:
        with contextlib.suppress(Exception):
            async for message in ws:
                # A status, not a heartbeat nor the queue-wide event.
                if 'data-version="' in message:
                    frames.append((time.time(), frame_version(message)))

    async def poll() -> None:
        """What celery-progress does: ask for the status every poll_interval."""
        async with httpx.AsyncClient(base_url=base_url, cookies=watch.cookies, timeout=30) as http:
            while not stop_polling.is_set():
                asked = time.monotonic()
                response = await http.get(f"/feedback/{token}/", headers={"HX-Request": "true"})
                polls.append((time.time(), frame_version(response.text)))
                wait = sizes.poll_interval - (time.monotonic() - asked)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop_polling.wait(), max(0.0, wait))

    reader = asyncio.create_task(read_frames())
    poller = asyncio.create_task(poll())
    out = workdir / f"push-{feedback_id}.json"
    try:
        await run_publisher(
            ["changes", "--feedback", feedback_id, "--count", str(sizes.push_updates),
             "--interval", str(sizes.push_interval), "--out", str(out)],
            env=env, timeout=sizes.push_updates * sizes.push_interval + 120,
        )  # fmt: skip
        records = json.loads(out.read_text())
        last = records[-1]["version"]
        for _ in range(100):  # the last frames are in flight: up to 5 s more
            if frames[-1][1] >= last:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(sizes.poll_interval)  # one more poll sees the end
    finally:
        stop_polling.set()
        await poller
        await ws.close()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader

    by_version = {version: at for at, version in frames}
    to_frame = [
        by_version[r["version"]] - r["t_publish"] for r in records if r["version"] in by_version
    ]
    change_to_frame = [
        by_version[r["version"]] - r["t_change"] for r in records if r["version"] in by_version
    ]
    staleness = []
    for record in records:
        seen = _first_seen(polls, record["version"])
        if seen is not None:
            staleness.append(seen - record["t_change"])
    publish_call = [r["t_published"] - r["t_publish"] for r in records]
    return {
        "updates": len(records),
        "delivered": sum(1 for r in records if r["version"] in by_version),
        "lost": sum(1 for r in records if r["version"] not in by_version),
        "out_of_order": sum(1 for a, b in zip(frames, frames[1:], strict=False) if b[1] <= a[1]),
        "publish_to_frame_ms": summarize_ms(to_frame),
        "change_to_frame_ms": summarize_ms(change_to_frame),
        "publish_call_ms": summarize_ms(publish_call),
        "polls": len(polls),
        "poll_staleness_ms": summarize_ms(staleness),
    }


OBSERVE_VERSIONS = """(id) => {
  window.__seen = [];
  let last = -1;
  const note = () => {
    const element = document.getElementById(id);
    if (!element) return;
    const version = Number(element.dataset.version);
    if (version > last) {
      last = version;
      window.__seen.push([version, (performance.timeOrigin + performance.now()) / 1000]);
    }
  };
  new MutationObserver(note).observe(document.body, {subtree: true, childList: true,
    attributes: true, attributeFilter: ["data-version"]});
  note();
}"""


async def _wait_in_page(page, function: str, *, timeout: float) -> None:
    """Poll a function in the page until it returns true.

    Not ``page.wait_for_function``: it evaluates strings, which the app's
    Content-Security-Policy (no 'unsafe-eval') rightly refuses.
    """
    deadline = time.monotonic() + timeout
    while not await page.evaluate(function):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{function} still false after {timeout:g} s")
        await asyncio.sleep(0.02)


async def dom_phase(
    base_url: str, watch: Watchables, sizes: Sizes, *, env: dict[str, str], workdir: Path
) -> dict:
    from playwright.async_api import async_playwright

    from devtools.browser import CHROMIUM, CHROMIUM_ARGS

    feedback_id, token = watch.items[0]
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            context = await browser.new_context()
            await context.add_cookies(
                [
                    {"name": name, "value": value, "url": base_url}
                    for name, value in watch.cookies.items()
                ]
            )
            page = await context.new_page()
            page.set_default_timeout(20_000)
            await page.goto(f"{base_url}/feedback/{token}/")
            # The page's one socket is open and watching (static/js/live.js).
            await _wait_in_page(
                page, "() => document.getElementById('live')?.dataset.state === 'live'", timeout=20
            )
            await page.evaluate(OBSERVE_VERSIONS, f"status-{feedback_id}")
            out = workdir / f"dom-{feedback_id}.json"
            await run_publisher(
                ["changes", "--feedback", feedback_id, "--count", str(sizes.dom_updates),
                 "--interval", str(sizes.dom_interval), "--out", str(out)],
                env=env, timeout=sizes.dom_updates * sizes.dom_interval + 120,
            )  # fmt: skip
            records = json.loads(out.read_text())
            last = records[-1]["version"]
            with contextlib.suppress(TimeoutError):
                await _wait_in_page(
                    page,
                    f"() => window.__seen.length > 0 && window.__seen.at(-1)[0] >= {last}",
                    timeout=10,
                )
            seen = [(at, version) for version, at in await page.evaluate("window.__seen")]
        finally:
            await browser.close()
    to_dom = []
    change_to_dom = []
    for record in records:
        shown = _first_seen(seen, record["version"])
        if shown is not None:
            to_dom.append(shown - record["t_publish"])
            change_to_dom.append(shown - record["t_change"])
    shown_versions = {version for _, version in seen}
    return {
        "updates": len(records),
        "shown": len(to_dom),
        "skipped": sum(1 for r in records if r["version"] not in shown_versions),
        "publish_to_dom_ms": summarize_ms(to_dom),
        "change_to_dom_ms": summarize_ms(change_to_dom),
    }


def scenario_push(stack: BenchStack, sizes: Sizes, *, layer: str, browser: bool) -> dict:
    daphne = stack.start_daphne(CHANNEL_LAYER=layer)
    env = stack.env(CHANNEL_LAYER=layer)
    result: dict = {"layer": layer}
    try:
        watch = prepare_watchables(1, tag=f"s2-{layer}")
        result["frames"] = asyncio.run(
            push_phase(daphne.url, watch, sizes, env=env, workdir=stack.dir)
        )
        if browser:
            watch = prepare_watchables(1, tag=f"s2dom-{layer}")
            result["dom"] = asyncio.run(
                dom_phase(daphne.url, watch, sizes, env=env, workdir=stack.dir)
            )
    finally:
        stack.stop_daphne()
    return result


# -- 3. Watchers --------------------------------------------------------------------------------


def _redis_clients(url: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return int(client.info("clients")["connected_clients"])
    finally:
        client.close()


async def watchers_phase(
    stack: BenchStack, watch: Watchables, sizes: Sizes, *, env: dict[str, str]
) -> dict:
    daphne = stack.daphne
    assert daphne is not None
    count = len(watch.items)
    sockets: list = [None] * count
    errors: Counter = Counter()
    gate = asyncio.Semaphore(sizes.connect_concurrency)
    rss_before = process_rss_bytes(daphne.pid)
    files_before = process_open_files(daphne.pid)

    async def open_one(index: int, token: str) -> None:
        async with gate:
            try:
                ws = await open_watch(daphne.url, token, cookies=watch.cookies, open_timeout=30)
                await asyncio.wait_for(recv_status(ws), 30)  # the snapshot comes first
                sockets[index] = ws
            except Exception as error:  # counted and reported: this is where it breaks
                errors[f"{type(error).__name__}: {str(error)[:100]}"] += 1

    profiler = (
        _profiler(stack, sizes, daphne.pid, f"daphne-open-{count}")
        if count == max(sizes.watchers)
        else None
    )
    started = time.monotonic()
    opening = asyncio.gather(*(open_one(i, token) for i, (_, token) in enumerate(watch.items)))
    try:
        await asyncio.wait_for(opening, sizes.connect_budget)
    except TimeoutError:
        errors[f"not open within the {sizes.connect_budget:g} s budget"] += sum(
            1 for ws in sockets if ws is None
        ) - sum(errors.values())
    open_seconds = time.monotonic() - started
    profile = profiler.stop() if profiler else None
    opened = [index for index, ws in enumerate(sockets) if ws is not None]
    rss_open = process_rss_bytes(daphne.pid)
    files_open = process_open_files(daphne.pid)
    redis_clients = _redis_clients(stack.redis.url)

    arrivals: dict[int, float] = {}

    async def await_update(index: int) -> None:
        with contextlib.suppress(Exception):
            await recv_status(sockets[index])
            arrivals[index] = time.time()

    readers = [asyncio.create_task(await_update(index)) for index in opened]
    ids = [watch.items[index][0] for index in opened]
    ids_file = stack.dir / f"watchers-{count}-ids.json"
    out = stack.dir / f"watchers-{count}-published.json"
    ids_file.write_text(json.dumps(ids))
    publish_error = None
    try:
        await run_publisher(
            ["groups", "--input", str(ids_file), "--out", str(out)],
            env=env, timeout=sizes.deliver_budget + 120,
        )  # fmt: skip
        records = json.loads(out.read_text())
    except Exception as error:
        publish_error = f"{type(error).__name__}: {str(error)[:300]}"
        records = []
    published = {record["group"]: record["t_publish"] for record in records}
    # Wait for every update, up to the budget; give up sooner once nothing has
    # arrived for a while (a layer that dropped updates will not send them later).
    deadline = time.monotonic() + sizes.deliver_budget
    seen, quiet_since = -1, time.monotonic()
    while readers and time.monotonic() < deadline and len(arrivals) < len(opened):
        if len(arrivals) != seen:
            seen, quiet_since = len(arrivals), time.monotonic()
        elif time.monotonic() - quiet_since > QUIET_SECONDS:
            break
        await asyncio.sleep(0.1)
    for reader in readers:
        reader.cancel()
    redis_clients_after = _redis_clients(stack.redis.url)
    latencies = []
    for index in opened:
        group = f"feedback.{watch.items[index][0]}"
        if index in arrivals and group in published:
            latencies.append(arrivals[index] - published[group])
    publish_span = (
        max(r["t_published"] for r in records) - min(r["t_publish"] for r in records)
        if records
        else None
    )
    for index in opened:  # abort, not a close handshake each: daphne is stopped next
        sockets[index].transport.abort()
    return {
        "watchers": count,
        "opened": len(opened),
        "open_seconds": open_seconds,
        "open_errors": dict(errors),
        "published": len(records),
        "publish_seconds": publish_span,
        "publish_error": publish_error,
        "delivered": len(arrivals),
        "lost": len(opened) - len(arrivals),
        "delivery_ms": summarize_ms(latencies),
        "daphne_rss_before": rss_before,
        "daphne_rss_open": rss_open,
        "bytes_per_socket": (rss_open - rss_before) / len(opened) if opened else None,
        "daphne_files_before": files_before,
        "daphne_files_open": files_open,
        "daphne_nofile_limit": process_nofile_limit(daphne.pid),
        "redis_clients_open": redis_clients,
        "redis_clients_after": redis_clients_after,
        "profile": profile,
    }


def scenario_watchers(stack: BenchStack, sizes: Sizes, *, layer: str) -> dict:
    steps = []
    for count in sizes.watchers:
        watch = prepare_watchables(count, tag=f"s3-{layer}-{count}")
        stack.start_daphne(CHANNEL_LAYER=layer)
        try:
            steps.append(
                asyncio.run(watchers_phase(stack, watch, sizes, env=stack.env(CHANNEL_LAYER=layer)))
            )
        finally:
            stack.stop_daphne()
    return {"layer": layer, "steps": steps}


# -- 4. Throughput ----------------------------------------------------------------------------


async def burst_phase(base_url: str, *, tag: str, total: int, clients: int) -> dict:
    """``total`` submissions from ``clients`` visitors, back to back."""
    visitors = [AsyncVisitor(base_url, timeout=120) for _ in range(clients)]
    codes: Counter = Counter()
    try:
        await asyncio.gather(*(visitor.open_form() for visitor in visitors))
        numbers = iter(range(total))
        started = time.time()

        async def run(visitor: AsyncVisitor) -> None:
            for number in numbers:  # shared iterator: exactly `total` submissions in all
                try:
                    response, _ = await visitor.submit(
                        email=f"{tag}-{number}@bench.test", message=f"Burst message {number}."
                    )
                    codes[response.status_code] += 1
                except httpx.HTTPError as error:
                    codes[type(error).__name__] += 1

        await asyncio.gather(*(run(visitor) for visitor in visitors))
        finished = time.time()
    finally:
        await asyncio.gather(*(visitor.aclose() for visitor in visitors))
    return {
        "submitted": codes.get(200, 0),
        "codes": {str(code): n for code, n in codes.items()},
        "t_start": started,
        "t_submitted": finished,
    }


def _wait_for_emails(stack: BenchStack, tag: str, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(_messages_for(stack, tag)) < expected:
        time.sleep(0.05)
    # Anything still running could add a duplicate: a short grace before counting.
    time.sleep(1.0)


def _delivery_counts(stack: BenchStack, tag: str, submitted: int) -> dict:
    messages = _messages_for(stack, tag)
    message_ids = Counter(str(m.message["Message-ID"]) for m in messages)
    arrivals = sorted(
        at
        for at, m in zip(stack.smtp.arrivals, stack.smtp.messages, strict=False)
        if any(r.startswith(f"{tag}-") for r in m.rcpt_tos)
    )
    rows = _rows(tag)
    return {
        "submitted": submitted,
        "rows": rows.count(),
        "rows_sent": rows.filter(status="sent").count(),
        "emails": len(messages),
        "unique_emails": len(message_ids),
        "duplicates": sum(n - 1 for n in message_ids.values()),
        "lost": submitted - len(message_ids),
        "first_email": arrivals[0] if arrivals else None,
        "last_email": arrivals[-1] if arrivals else None,
    }


def scenario_burst(stack: BenchStack, sizes: Sizes) -> dict:
    budget = max(60.0, sizes.burst / 10)  # seconds for all emails to arrive, at most
    runs = []
    profiles: dict[str, dict] = {}
    # 4a. End to end: the worker runs while the burst arrives.
    worker = stack.start_worker()
    daphne = stack.start_daphne()
    try:
        _warm_up(daphne.url)
        # Only this run is profiled: the drain runs below are compared with each other.
        profiler = _profiler(stack, sizes, worker.pid, "worker-burst", subprocesses=True)
        burst = asyncio.run(
            burst_phase(daphne.url, tag="s4e", total=sizes.burst, clients=sizes.burst_clients)
        )
        _wait_for_emails(stack, "s4e", burst["submitted"], budget)
        if profiler:
            profiles["worker (prefork, default concurrency) during the burst"] = profiler.stop()
        counts = _delivery_counts(stack, "s4e", burst["submitted"])
        runs.append(
            {
                "kind": "end to end",
                "pool": "prefork",
                "concurrency": os.cpu_count() or 1,
                "prefetch": None,
                "env": {},
                **burst,
                **counts,
                "seconds": (counts["last_email"] or time.time()) - burst["t_start"],
            }
        )
        # 4b. Drain: the burst waits in the queue, then a worker empties it.
        stack.stop_worker()
        for number, (pool, concurrency, prefetch, env) in enumerate(sizes.drain_workers):
            tag = f"s4d{number}"
            burst = asyncio.run(
                burst_phase(daphne.url, tag=tag, total=sizes.burst, clients=sizes.burst_clients)
            )
            worker = stack.start_worker(
                pool=pool, concurrency=concurrency, prefetch=prefetch, purge=False, **env
            )
            _wait_for_emails(stack, tag, burst["submitted"], budget)
            stack.stop_worker()
            counts = _delivery_counts(stack, tag, burst["submitted"])
            span = (
                counts["last_email"] - counts["first_email"]
                if counts["first_email"] is not None
                else None
            )
            runs.append(
                {
                    "kind": "queued drain",
                    "pool": pool,
                    "concurrency": concurrency,
                    "prefetch": prefetch,
                    "env": env,
                    **burst,
                    **counts,
                    "seconds": span,
                }
            )
    finally:
        stack.stop_daphne()
        stack.stop_worker()
    for run in runs:
        seconds = run["seconds"]
        run["emails_per_second"] = (
            (run["unique_emails"] - (1 if run["kind"] == "queued drain" else 0)) / seconds
            if seconds
            else None
        )
    return {"runs": runs, "profiles": profiles}
