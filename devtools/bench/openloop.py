"""Open-loop submit latency: the issue 12 method, for the submit target.

    python -m devtools.bench.openloop                          # sqlite and postgres, 3 x 20 s
    python -m devtools.bench.openloop --seconds 3 --repeats 1  # a quick look

Arrivals are a Poisson process at ``--rate`` per second, drawn in advance from
a seed; each submission is sent at its intended time from one of ``--sessions``
visitors (own cookies, one connection each, as a browser tab), and its latency
is counted from the intended time, so a stall counts against every request it
delays. The load generator runs in its own process (``--client``); the CPU of
daphne, the worker (with its pool) and the generator are read apart from
/proc. The worker runs and sends every email meanwhile. A warm-up run comes
first and is not counted; then ``--repeats`` runs, each with its percentiles,
and the raw samples (intended time, latency, status) go to the JSON file.
No profiler runs here.
"""

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from devtools.bench.stats import percentile

REPO_ROOT = Path(__file__).resolve().parents[2]
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and every live process below it."""
    total, todo = 0.0, [pid]
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK)
    while todo:
        current = todo.pop()
        total += stats.get(current, (0, 0.0))[1]
        todo.extend(child for child, (ppid, _) in stats.items() if ppid == current)
    return total


# -- the load generator (its own process) --------------------------------------------------------


async def generate(url: str, *, rate: float, seconds: float, sessions: int, seed: int) -> dict:
    from devtools.bench.clients import AsyncVisitor

    rng = random.Random(seed)
    due, at = [], rng.expovariate(rate)
    while at < seconds:
        due.append(at)
        at += rng.expovariate(rate)
    visitors = [AsyncVisitor(url, timeout=30) for _ in range(sessions)]
    await asyncio.gather(*(visitor.open_form() for visitor in visitors))
    samples: list[list] = []
    started = time.perf_counter() + 0.2

    async def one(index: int, offset: float) -> None:
        await asyncio.sleep(max(0.0, started + offset - time.perf_counter()))
        visitor = visitors[rng.randrange(sessions)]
        try:
            response, _ = await visitor.submit(email=f"o{seed}-{index}@example.com", message="hi")
            code = response.status_code
        except Exception as error:  # counted, never hidden
            code = type(error).__name__
        samples.append([offset, time.perf_counter() - started - offset, code])

    cpu_before = time.process_time()
    await asyncio.gather(*(one(index, offset) for index, offset in enumerate(due)))
    cpu = time.process_time() - cpu_before
    await asyncio.gather(*(visitor.aclose() for visitor in visitors))
    return {"samples": samples, "client_cpu_s": cpu}


def run_client(url: str, **kwargs) -> dict:
    argv = [sys.executable, "-m", "devtools.bench.openloop", "--client", url]
    for key, value in kwargs.items():
        argv += [f"--{key}", str(value)]
    out = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout)


# -- the measured runs ---------------------------------------------------------------------------


def summarize(samples: list[list]) -> dict:
    ok = sorted(latency * 1000 for _, latency, code in samples if code == 200)
    return {
        "sent": len(samples),
        "ok": len(ok),
        "failed": len(samples) - len(ok),
        "p50_ms": percentile(ok, 0.50),
        "p99_ms": percentile(ok, 0.99),
        "max_ms": ok[-1] if ok else None,
        "beyond_p99": sum(1 for value in ok if value >= percentile(ok, 0.99)) if ok else 0,
    }


def measure(database: str, args: argparse.Namespace) -> dict:
    from devtools.bench.stack import BenchStack

    runs = []
    with BenchStack(database=database) as stack:
        daphne = stack.start_daphne()
        worker = stack.start_worker()
        load = {"rate": args.rate, "sessions": args.sessions}
        run_client(daphne.url, seconds=min(5, args.seconds), seed=0, **load)  # warm-up
        for repeat in range(1, args.repeats + 1):
            emails_before = len(stack.smtp.arrivals)
            daphne_cpu, worker_cpu = cpu_seconds(daphne.pid), cpu_seconds(worker.pid)
            result = run_client(daphne.url, seconds=args.seconds, seed=repeat, **load)
            daphne_cpu = cpu_seconds(daphne.pid) - daphne_cpu
            time.sleep(2)  # the last emails
            worker_cpu = cpu_seconds(worker.pid) - worker_cpu
            emails = len(stack.smtp.arrivals) - emails_before
            summary = summarize(result["samples"])
            ok = max(summary["ok"], 1)
            summary.update(
                emails=emails,
                daphne_cpu_ms_per_submit=1000 * daphne_cpu / ok,
                worker_cpu_ms_per_email=1000 * worker_cpu / max(emails, 1),
                client_cpu_ms_per_submit=1000 * result["client_cpu_s"] / ok,
                samples=result["samples"],
            )
            runs.append(summary)
            print(f"openloop {database} #{repeat}: " + json.dumps(
                {k: v for k, v in summary.items() if k != "samples"}), file=sys.stderr)  # fmt: skip
    return {"database": database, "runs": runs}


TABLE_HEAD = (
    "| database | run | sent | ok | p50 ms | p99 ms | max ms | daphne CPU-ms/submit "
    "| worker CPU-ms/email | generator CPU-ms/submit |\n|" + "---|" * 10
)


def table(results: list[dict]) -> str:
    rows = [TABLE_HEAD]
    for result in results:
        for number, run in enumerate(result["runs"], start=1):
            cells = [result["database"], number, run["sent"], run["ok"], run["p50_ms"],
                     run["p99_ms"], run["max_ms"], run["daphne_cpu_ms_per_submit"],
                     run["worker_cpu_ms_per_email"], run["client_cpu_ms_per_submit"]]  # fmt: skip
            text = [f"{cell:.1f}" if isinstance(cell, float) else str(cell) for cell in cells]
            rows.append("| " + " | ".join(text) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--json", default=str(REPO_ROOT / "docs" / "benchmarks-openloop.json"))
    parser.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        result = asyncio.run(
            generate(args.client, rate=args.rate, seconds=args.seconds,
                     sessions=args.sessions, seed=args.seed)
        )  # fmt: skip
        print(json.dumps(result))
        return 0
    names = [name.strip() for name in args.databases.split(",") if name.strip()]
    if len(names) == 1:
        results = [measure(names[0], args)]
    else:  # one process per database: Django's settings load once per process
        results = []
        for name in names:
            part = Path(f"{args.json}.{name}")
            own = list(argv if argv is not None else sys.argv[1:])
            subprocess.run(
                [sys.executable, "-m", "devtools.bench.openloop", *own,
                 "--databases", name, "--json", str(part)],
                cwd=REPO_ROOT, check=False, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            results += json.loads(part.read_text())["results"]
            part.unlink()
    Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}))
    print(table(results))
    return 0 if all(run["failed"] == 0 for r in results for run in r["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
