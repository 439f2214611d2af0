"""The bench's scenarios, run inside one configuration's process (its stack, Django set up).

Clients run in their own processes (devtools/bench/load.py); times that cross
processes are ``time.time()`` (one machine, one clock). Each scenario is
bounded in count and time and returns a JSON-able dict; nothing is asserted.
"""

import contextlib
import json
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass

from devtools.bench.stack import BenchStack, cpu_seconds, rss_bytes
from devtools.processes import REPO_ROOT, wait_until

APP_ROLES = ("daphne", "worker", "redis", "postgres", "haproxy")  # the rest is the bench's
PROBES = 5  # page: probes per socket to measure the probe's cost alone (over CPU-clock ticks)


@dataclass(frozen=True)
class Sizes:
    rates: tuple[float, ...] = (25, 50)  # submit: submissions per second, open loop
    seconds: float = 20  # submit: per run (the runs: about 21 s)
    sessions: int = 50
    repeats: int = 1
    warmup: float = 5
    ladder: tuple[float, ...] = (10, 15, 20, 25, 30, 35, 40, 50)  # ladder: rates, in order
    ladder_seconds: float = 10
    drain: int = 1000  # drain
    pages: int = 300  # page: success pages, or page sockets each watching a card
    pushes: int = 1000  # push: publishes (and changes), one per interval
    push_interval: float = 0.02
    push_rate: float = 12  # push: the submissions meanwhile, about half the 2 cores
    doms: int = 1000  # push: publishes watched in Chromium
    sockets: int = 10_000  # sockets
    budget: float = 90  # seconds to wait for emails or frames, at most
    open_budget: float = 150  # sockets: seconds to open them, at most


FULL = Sizes()
QUICK = Sizes(seconds=6, warmup=2, ladder=(10, 20, 30, 40), ladder_seconds=4, drain=300,
              pages=100, pushes=200, doms=200, sockets=2000)  # fmt: skip
SMOKE = Sizes(
    rates=(10,), seconds=1, sessions=3, warmup=0.5, ladder=(5, 10), ladder_seconds=1, drain=20,
    pages=10, pushes=10, push_interval=0.05, push_rate=5, doms=5, sockets=20, budget=60,
)  # fmt: skip


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return math.nan
    position = (len(sorted_values) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def summarize_ms(seconds: list[float]) -> dict[str, float | int]:
    """count, p50/p95/p99, max and mean of latencies in seconds, in milliseconds."""
    values = sorted(value * 1000 for value in seconds)
    if not values:
        return {"count": 0}
    return {"count": len(values), "max": values[-1], "mean": sum(values) / len(values),
            **{f"p{n}": percentile(values, n / 100) for n in (50, 95, 99)}}  # fmt: skip


def load(mode: str, url: str, *, background: bool = False, **options) -> dict | subprocess.Popen:
    """A client process (devtools/bench/load.py): its JSON, or the process when ``background``."""
    argv = [sys.executable, "-m", "devtools.bench.load", mode, url,
            json.dumps(options, default=str)]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    return proc if background else finish(proc)


def finish(proc: subprocess.Popen) -> dict:
    """The JSON a load process printed last (closing its stdin first: that stops it)."""
    proc.stdin.close()
    out = proc.stdout.read()
    proc.wait(60)
    if proc.returncode != 0:
        raise RuntimeError(f"the load generator exited {proc.returncode}")
    return json.loads(out.splitlines()[-1])


def watchables(count: int, *, tag: str, path) -> dict:
    """``count`` queued feedback (no task) and one session allowed to watch them all, with the
    version of each as the submission's answer rendered its card (``versions``)."""
    from importlib import import_module

    from django.conf import settings
    from django.db import transaction

    from feedback.services import feedback_create
    from feedback.tokens import feedback_token

    session = import_module(settings.SESSION_ENGINE).SessionStore()
    with transaction.atomic():
        rows = [feedback_create(email=f"{tag}-{n}@bench.test", message="Watching.", enqueue=False)
                for n in range(count)]  # fmt: skip
    spec = {"tokens": [feedback_token(row.pk, session=session) for row in rows],
            "versions": [row.version for row in rows]}  # fmt: skip
    session.save()
    spec.update(cookies={settings.SESSION_COOKIE_NAME: session.session_key}, poll=spec["tokens"][0])
    path.write_text(json.dumps(spec))
    return {"ids": [str(row.pk) for row in rows], **spec}


def emails(stack: BenchStack, tag: str) -> list[tuple[float, str]]:
    return [(at, rcpt) for at, rcpt in stack.arrivals() if rcpt.startswith(f"{tag}-")]


def wait_for_emails(stack: BenchStack, tag: str, expected: int, budget: float) -> None:
    with contextlib.suppress(TimeoutError):  # what did not arrive is counted lost
        wait_until(lambda: len({r for _, r in emails(stack, tag)}) >= expected, budget, "all")
    time.sleep(1)  # anything still running could add a duplicate


def delivery(stack: BenchStack, tag: str, addresses: set[str]) -> dict:
    counts = Counter(rcpt for _, rcpt in emails(stack, tag))
    return {"addresses": len(addresses), "emails": sum(counts.values()),
            "lost": len(addresses - set(counts)),
            "duplicates": sum(counts.values()) - len(counts)}  # fmt: skip


def cpu_delta(before: dict, after: dict) -> dict:
    return {role: after[role] - before[role] for role in before}


def submit_runs(stack: BenchStack, url: str, sizes: Sizes, *, rate: float, seconds: float,
                tag: str, tutorial: bool, warmup: bool = True, repeats: int | None = None,
                email_budget: float | None = None) -> dict:  # fmt: skip
    """Warm-up, then ``repeats`` open-loop runs, each waiting for its emails. The app's
    visitors watch their cards; the baseline's (``tutorial``) follow the redirect."""
    common = {"rate": rate, "sessions": sizes.sessions, "watch": not tutorial,
              "tutorial": tutorial}  # fmt: skip
    if warmup:
        load("submit", url, seconds=sizes.warmup, seed=0, tag=f"{tag}w", **common)
    runs, good = [], 302 if tutorial else 200
    for repeat in range(1, (repeats or sizes.repeats) + 1):
        dropped = stack.fresh_queue() if warmup else 0  # each run starts with an empty queue
        before, run_tag, arrived_before = stack.cpu(), f"{tag}{repeat}", len(stack.arrivals())
        result = load("submit", url, seconds=seconds, seed=repeat, tag=run_tag, **common)
        ended = time.time()
        ok = {f"{run_tag}-{s[3]}@bench.test": s for s in result["samples"] if s[2] == good}
        wait_for_emails(stack, run_tag, len(ok), email_budget or sizes.budget)
        cpu = cpu_delta(before, stack.cpu())
        arrived = {rcpt: at for at, rcpt in reversed(emails(stack, run_tag))}  # the first one
        to_email = [arrived[address] - s[0] for address, s in ok.items() if address in arrived]
        counts = delivery(stack, run_tag, set(ok))
        runs.append({
            "rate": rate, "sent": len(result["samples"]), "ok": len(ok),
            "codes": dict(Counter(str(s[2]) for s in result["samples"])),
            "answer_ms": summarize_ms([s[1] for s in ok.values()]),
            "submit_to_email_ms": summarize_ms(to_email), **counts,
            # Not yet emailed 2 s after the load's end: a backlog that grew over the run.
            "backlog": sum(1 for a in ok if a not in arrived or arrived[a] > ended + 2),
            "frames": result["frames"], "refused": result["refused"], "sockets": result["sockets"],
            "socket_errors": result["socket_errors"], "backlog_dropped": dropped,
            "reconnects": result["reconnects"],  # page sockets closed 4401, then reopened
            "cpu_s": {**cpu, "generator": result["cpu_s"]},
            # Every email sent in the window, this run's or a backlog's: the worker's CPU was.
            "worker_ms_per_email": 1000 * cpu["worker"] / max(
                len(stack.arrivals()) - arrived_before, 1),
            "samples": [s[:3] for s in result["samples"]], "email_samples": to_email,
        })  # fmt: skip
    return {
        "runs": runs,
        "answer_ms": summarize_ms([s[1] for run in runs for s in run["samples"] if s[2] == good]),
        "submit_to_email_ms": summarize_ms([v for run in runs for v in run["email_samples"]]),
    }


def scenario_submit(stack: BenchStack, url: str, sizes: Sizes, *, tutorial: bool) -> dict:
    """Open-loop submissions at each of ``rates``, emails waited for: {rate: runs}."""
    return {str(rate): submit_runs(stack, url, sizes, rate=rate, seconds=sizes.seconds,
                                   tag=f"c{n}-", tutorial=tutorial)
            for n, rate in enumerate(sizes.rates)}  # fmt: skip


def scenario_ladder(stack: BenchStack, url: str, sizes: Sizes, *, tutorial: bool) -> dict:
    """Rising rates, one short run each, until answer p99 reaches 250 ms or the emails
    fall behind (some not sent 2 s after the run): the highest rate before is held."""
    steps, held = [], None
    for n, rate in enumerate(sizes.ladder):
        result = submit_runs(stack, url, sizes, rate=rate, seconds=sizes.ladder_seconds,
                             tag=f"l{n}-", tutorial=tutorial, warmup=n == 0, repeats=1,
                             email_budget=30)  # fmt: skip
        run = result["runs"][0]
        run["held"] = (run["ok"] == run["sent"] and run["answer_ms"].get("p99", math.inf) < 250
                       and run["backlog"] == 0)  # fmt: skip
        steps.append({key: value for key, value in run.items() if "samples" not in key})
        if not run["held"]:
            break
        held = rate
    return {"held": held, "steps": steps}


def scenario_drain_baseline(stack: BenchStack, sizes: Sizes) -> dict:
    """The plain drain for the baseline: ``drain`` tasks queued by ``delay``, then one
    worker node (2 pool processes) empties the queue."""
    from devtools.bench.baseline.celery import send_feedback_email_task

    stack.fresh_queue(restart=False)
    addresses = {f"d-{n}@bench.test" for n in range(sizes.drain)}
    for address in sorted(addresses):
        send_feedback_email_task.delay(address, "Drain.")
    stack.start_workers(1, concurrency=2)
    before = stack.cpu()  # from the node's ready line, as in scenario_drain
    wait_for_emails(stack, "d", sizes.drain, sizes.budget)
    cpu = cpu_delta(before, stack.cpu())
    arrivals = sorted(at for at, _ in emails(stack, "d"))
    stack.stop_workers()
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else None
    counts = delivery(stack, "d", addresses)
    return {"chaos": False, "kills": 0, **counts, "seconds": span, "cpu_s": cpu,
            "emails_per_s": (len(arrivals) - 1) / span if span else None,
            "worker_ms_per_email": 1000 * cpu["worker"] / max(counts["emails"], 1)}  # fmt: skip


def scenario_page(stack: BenchStack, url: str, sizes: Sizes, *, tutorial: bool) -> dict:
    """What follows an answer, ``pages`` times: the baseline's success page (a GET), or the
    app's page socket opened and watching a card as the answer showed it, until the watch is
    taken (load.py's ``taken``: the probe's answer). daphne's CPU, and the probe's alone."""
    import httpx

    daphne = stack.daphnes[0].pid
    if tutorial:
        before = cpu_seconds(daphne)
        with httpx.Client(base_url=url) as client:
            done = sum(client.get("/success/").status_code == 200 for _ in range(sizes.pages))
        return {"asked": sizes.pages, "done": done,
                "daphne_ms": 1000 * (cpu_seconds(daphne) - before) / max(done, 1)}  # fmt: skip
    watchables(sizes.pages, tag="pg", path=stack.dir / "pages.json")
    before = cpu_seconds(daphne)
    holder = load("hold", url, background=True, spec=stack.dir / "pages.json", concurrency=50,
                  probe_cost=PROBES)  # fmt: skip
    opened = json.loads(holder.stdout.readline())
    opened_cpu, before_probes = cpu_seconds(daphne) - before, cpu_seconds(daphne)
    holder.stdin.write("\n")  # PROBES more on each socket, alone
    holder.stdin.flush()
    probed = json.loads(holder.stdout.readline())["probed"]
    probe_cpu = cpu_seconds(daphne) - before_probes
    finish(holder)
    done = opened["opened"]
    return {"asked": sizes.pages, "done": done, "daphne_ms": 1000 * opened_cpu / max(done, 1),
            "open_errors": opened["errors"], "frames_on_open": opened["frames_on_open"],
            "probed": probed, "probe_ms": 1000 * probe_cpu / max(probed, 1)}  # fmt: skip


def scenario_drain(stack: BenchStack, sizes: Sizes, *, chaos: bool) -> dict:
    """3. A queue of ``drain`` emails, then one worker node (2 pool processes) empties it.

    ``chaos``: beat runs the sweeper; a pool process is SIGKILLed every 5 s (``BENCH_KILL_EVERY``
    seconds, at least 0.5) and Redis (no persistence: its queue is lost) restarts once;
    counted after the sending lease.
    """
    from feedback.services import feedback_submit

    tag = "k" if chaos else "d"
    env = {"FEEDBACK_TASK_TIME_LIMIT": 10, "FEEDBACK_STUCK_AFTER": 5} if chaos else {}
    stack.fresh_queue(restart=False)
    set_aside = set_aside_leftovers()
    addresses = {f"{tag}-{n}@bench.test" for n in range(sizes.drain)}
    for address in sorted(addresses):
        feedback_submit(email=address, message="Drain.")
    if chaos:
        stack.start_beat(**env)
    stack.start_workers(1, concurrency=2, **env)
    before = stack.cpu()  # from the node's ready line: its start-up is not a drain's cost
    every = max(0.5, float(os.environ.get("BENCH_KILL_EVERY", "5")))
    started, kills, restarted = time.monotonic(), 0, False
    lease = 10 + max(2.0, 0.25 * 10) if chaos else 0  # FEEDBACK_SENDING_LEASE for 10 s
    deadline = started + sizes.budget + lease

    def going() -> bool:  # until every address arrived and, with chaos, both blows landed
        done = len({r for _, r in emails(stack, tag)}) >= sizes.drain
        return time.monotonic() < deadline and not (done and (not chaos or kills and restarted))

    while going():
        elapsed = time.monotonic() - started
        if chaos and not restarted and elapsed > 1:
            stack.redis.stop()
            stack.redis.start()
            restarted = True
        if chaos and elapsed > 5 + every * kills:
            # A pool process, not the node's main one; none between a kill and its
            # replacement's start: then the next tick tries again.
            pool = stack.workers[0].pool_pids()
            if pool:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pool[kills % len(pool)], signal.SIGKILL)
                kills += 1
        time.sleep(0.05)
    time.sleep(lease + 1)  # a late duplicate would show by then
    cpu = cpu_delta(before, stack.cpu())
    arrivals = sorted(at for at, _ in emails(stack, tag))
    stack.stop_workers()
    stack.stop_beat()
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else None
    counts = delivery(stack, tag, addresses)
    return {
        "chaos": chaos, "kills": kills, "kill_every": every if chaos else None,
        "redis_restarts": int(restarted), **counts,
        "not_once": not_once(stack, tag, addresses), "set_aside": set_aside,
        "seconds": span, "emails_per_s": (len(arrivals) - 1) / span if span else None,
        "worker_ms_per_email": 1000 * cpu["worker"] / max(counts["emails"], 1),
        "cpu_s": cpu,
    }  # fmt: skip


def set_aside_leftovers() -> dict:
    """Cancel the rows earlier scenarios left waiting (their queue was purged).

    Without this the chaos drain's sweeper finds them and sends them among this
    drain's emails: thousands after scenario 4's load, a backlog in front of every
    row the sweeper takes back, so those were still `sending` at the count.
    """
    from feedback.models import Feedback, Status
    from feedback.services import feedback_cancel

    waiting = Feedback.objects.filter(status__in=(Status.QUEUED, Status.RETRYING))
    ids = list(waiting.values_list("pk", flat=True))
    cancelled = sum(feedback_cancel(feedback_id=pk) is not None for pk in ids)
    # `sending` rows cannot be cancelled: the sweeper sends them once their lease ends.
    sending = Feedback.objects.filter(status=Status.SENDING).count()
    return {"cancelled": cancelled, "sending": sending}


def not_once(stack: BenchStack, tag: str, addresses: set[str]) -> list[dict]:
    """Each address that did not arrive exactly once, with its row as it is at the count."""
    from django.utils import timezone

    from feedback.models import Feedback

    counts = Counter(rcpt for _, rcpt in emails(stack, tag))
    odd = sorted(address for address in addresses if counts[address] != 1)
    rows = Feedback.objects.filter(email__in=odd).prefetch_related("events")
    now = timezone.now()
    return [{"address": row.email, "emails": counts[row.email], "status": row.status,
             "attempts": row.attempts, "untouched_s": (now - row.updated_at).total_seconds(),
             "claimed_by": row.claimed_by, "failure_reason": row.failure_reason,
             "timeline": [event.status for event in row.events.all()]}
            for row in sorted(rows, key=lambda row: row.email)]  # fmt: skip


def accounted(sent: dict[int, float], shown: list[tuple[int | None, float]]) -> dict:
    """Every version sent (version: time), against what showed (version, time), in order.

    Delivered: its own version showed first. Superseded: a newer one showed first (the
    consumer then drops the older, as it must; a person sees the newer one): shown then.
    Lost: nothing as new ever showed. The times are to when each was shown.
    """
    shown = sorted((at, v) for v, at in shown if v is not None)
    counts, latency = Counter(), []
    for version, at in sent.items():
        first = next(((when, v) for when, v in shown if v >= version), None)
        if first is None:
            counts["lost"] += 1
            continue
        counts["delivered" if first[1] == version else "superseded"] += 1
        latency.append(first[0] - at)
    return {"sent": len(sent), "delivered": counts["delivered"],
            "superseded": counts["superseded"], "lost": counts["lost"],
            "ms": summarize_ms(latency)}  # fmt: skip


def scenario_push(stack: BenchStack, url: str, sizes: Sizes, *, browser: bool) -> dict:
    """4. Publish -> frame, change -> frame and change -> poll (2 s, the page's), under load."""
    from feedback.delivery import feedback_claim, feedback_mark_progress
    from feedback.models import Feedback
    from feedback.selectors import feedback_render_status, status_group
    from realtime.publish import publish

    stack.fresh_queue()
    spec = watchables(2, tag="p", path=stack.dir / "push.json")
    published_id, changed_id = spec["ids"]
    (stack.dir / "push.json").write_text(json.dumps({**spec, "poll": spec["tokens"][1]}))
    background = load("submit", url, background=True, rate=sizes.push_rate, seconds=600,
                      sessions=sizes.sessions, seed=99, tag="pb", watch=True,
                      until_stdin_closes=True, linger=0)  # fmt: skip
    time.sleep(2)  # the load is under way
    cpu_before, began = stack.cpu(), time.monotonic()
    probe = load("probe", url, background=True, spec=stack.dir / "push.json")
    probe.stdout.readline()
    time.sleep(1)
    changed = feedback_claim(feedback_id=changed_id)
    shown = Feedback.objects.get(pk=published_id)
    t_publish, t_change = {}, {}
    start = time.monotonic()
    for n in range(sizes.pushes):
        time.sleep(max(0.0, start + n * sizes.push_interval - time.monotonic()))
        # Above the row's own version (queued, no task: it stays 0), so the consumer's
        # re-read of the row can never pass them.
        shown.version = 1000 + n
        html, group = feedback_render_status(feedback=shown), status_group(shown.pk)
        t_publish[shown.version] = time.time()
        publish(group=group, html=html, version=shown.version, final=False)
        at = time.time()
        changed = feedback_mark_progress(feedback_id=changed_id, step=changed.step,
                                         progress=n % 100)  # fmt: skip
        t_change[changed.version] = at
    # Until the last version of each card is on the socket and in a poll, or the budget is
    # out: a frame that is only late is counted late, not lost.
    last = {published_id: max(t_publish), changed_id: max(t_change)}
    probe.stdin.write(json.dumps({"frames": last, "poll": last[changed_id]}) + "\n")
    probe.stdin.flush()
    select.select([probe.stdout], [], [], sizes.budget)
    seen = finish(probe)
    on_socket = {fid: [(v, at) for at, frame, v in seen["frames"] if frame == fid] for fid in last}
    result = {
        "publish_frame": accounted(t_publish, on_socket[published_id]),
        "change_frame": accounted(t_change, on_socket[changed_id]),
        "change_poll": accounted(t_change, [(v, at) for at, v in seen["polls"]]),
        "polls": len(seen["polls"]),
    }
    result["dom"] = dom(stack, url, sizes) if browser else None
    cpu = cpu_delta(cpu_before, stack.cpu())  # the app's share of the cores meanwhile
    result["app_cores"] = sum(cpu[role] for role in APP_ROLES) / (time.monotonic() - began)
    result["background"] = {"answer_ms": summarize_ms(
        [s[1] for s in finish(background)["samples"] if s[2] == 200])}  # fmt: skip
    return result


OBSERVE = """(id) => {
  window.__seen = [];
  const note = () => {
    const element = document.getElementById(id);
    // The wall clock, as the publisher's time.time(): performance.timeOrigin + now() drifted
    // from it (a DOM change 50 ms before its publish, in one run).
    if (element) window.__seen.push([Number(element.dataset.version), Date.now() / 1000]);
  };
  new MutationObserver(note).observe(document.body, {subtree: true, childList: true,
    attributes: true, attributeFilter: ["data-version"]});
}"""


def dom(stack: BenchStack, url: str, sizes: Sizes) -> dict:
    """Publish -> the page's DOM shows it, in Chromium (a status page, its one socket)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    from devtools.browser import CHROMIUM, CHROMIUM_ARGS
    from feedback.models import Feedback
    from feedback.selectors import feedback_render_status, status_group
    from realtime.publish import publish

    spec = watchables(1, tag="dom", path=stack.dir / "dom.json")
    (feedback_id,), (token,) = spec["ids"], spec["tokens"]
    shown, t_publish, frames = Feedback.objects.get(pk=feedback_id), {}, []
    for n in range(sizes.doms):  # rendered beforehand: Playwright's loop forbids the ORM
        shown.version = 1000 + n
        frames.append((shown.version, feedback_render_status(feedback=shown)))

    def publish_all() -> None:  # its own thread, where no event loop runs
        start = time.monotonic()
        for n, (version, html) in enumerate(frames):
            time.sleep(max(0.0, start + n * sizes.push_interval - time.monotonic()))
            t_publish[version] = time.time()
            publish(group=status_group(feedback_id), html=html, version=version, final=False)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context()
        context.add_cookies([{"name": name, "value": value, "url": url}
                             for name, value in spec["cookies"].items()])  # fmt: skip
        page = context.new_page()
        page.goto(f"{url}/feedback/{token}/")
        page.locator("#live[data-state='live']").wait_for(timeout=30_000)
        page.evaluate(OBSERVE, f"status-{feedback_id}")
        publisher = threading.Thread(target=publish_all)
        publisher.start()
        publisher.join()
        with contextlib.suppress(PlaywrightTimeout):  # late is counted late, not lost
            page.wait_for_function("(last) => window.__seen.some(([v]) => v >= last)",
                                   arg=max(t_publish), timeout=sizes.budget * 1000)  # fmt: skip
        seen = page.evaluate("window.__seen")  # [version, time] as the DOM changed
        browser.close()
    # Two frames swapped before the observer ran show as the newer: superseded, as a person
    # sees it (shown when the newer one appeared).
    return accounted(t_publish, [(version, at) for version, at in seen])


def scenario_sockets(stack: BenchStack, url: str, sizes: Sizes) -> dict:
    """5. One daphne holds ``sockets`` page sockets; then one frame to each (CPU per frame)."""
    import asyncio

    from channels.layers import get_channel_layer

    from feedback.models import Feedback
    from feedback.selectors import feedback_render_status, status_group
    from realtime.publish import status_event

    spec = watchables(sizes.sockets, tag="w", path=stack.dir / "sockets.json")
    daphne = stack.daphnes[0]
    rss_before = rss_bytes(daphne.pid)
    holder = load("hold", url, background=True, spec=stack.dir / "sockets.json", concurrency=200,
                  budget=sizes.open_budget)  # fmt: skip
    opened = json.loads(holder.stdout.readline())
    rss_open = rss_bytes(daphne.pid)
    events = []
    for row in Feedback.objects.filter(pk__in=spec["ids"]):
        row.version += 1
        group = status_group(row.pk)
        html = feedback_render_status(feedback=row)
        events.append((group, status_event(html=html, version=row.version, final=False,
                                           group=group)))  # fmt: skip

    async def send_all() -> dict[str, float]:
        layer, sent = get_channel_layer(), {}
        for group, event in events:
            sent[group] = time.time()
            await layer.group_send(group, event)
        return sent

    # Daphne's idle CPU with the sockets open (heartbeats, re-reads), taken off below.
    time.sleep(2)
    idle_before, idle_started = cpu_seconds(daphne.pid), time.monotonic()
    time.sleep(3)
    idle_rate = (cpu_seconds(daphne.pid) - idle_before) / (time.monotonic() - idle_started)
    cpu_before, started = cpu_seconds(daphne.pid), time.monotonic()
    sent = asyncio.run(send_all())
    select.select([holder.stdout], [], [], sizes.budget)  # "delivered", or the budget is out
    cpu = cpu_seconds(daphne.pid) - cpu_before - idle_rate * (time.monotonic() - started)
    arrivals = finish(holder)["arrivals"]
    latency = [at - sent[f"{status_group(fid)}"] for at, fid, _ in arrivals
               if fid and status_group(fid) in sent]  # fmt: skip
    return {
        "asked": sizes.sockets, "opened": opened["opened"], "open_errors": opened["errors"],
        "frames_on_open": opened["frames_on_open"],
        "open_seconds": opened["seconds"], "opens_per_s": opened["opened"] / opened["seconds"],
        "idle_cpu_percent": 100 * idle_rate,
        "kib_per_socket": (rss_open - rss_before) / 1024 / max(opened["opened"], 1),
        "frames": len(arrivals), "daphne_ms_per_frame": 1000 * cpu / max(len(arrivals), 1),
        "publish_to_frame_ms": summarize_ms(latency),
    }  # fmt: skip
