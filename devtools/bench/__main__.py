"""``python -m devtools.bench``: run the scenarios, write docs/benchmarks.md.

    python -m devtools.bench                      # everything, full size (make bench)
    python -m devtools.bench --size smoke         # tiny sizes: seconds, for the tests
    python -m devtools.bench --scenarios 2,3 --layers pubsub --out /tmp/b.md

Exit status 1 when a scenario failed (its error is in the report and the JSON).
"""

import argparse
import dataclasses
import json
import logging
import os
import platform
import shlex
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from devtools.bench import report, scenarios
from devtools.bench.stack import BenchStack, raise_nofile_limit
from devtools.browser import CHROMIUM

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "Django", "celery", "kombu", "channels", "channels-redis", "daphne", "Twisted", "redis",
    "django-htmx", "httpx", "websockets", "playwright", "aiosmtpd",
)  # fmt: skip


def _command_output(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info(stack: BenchStack, nofile: tuple[int, int]) -> dict:
    cpu_model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    meminfo = dict(
        line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line
    )
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "-"
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "cpu": cpu_model,
        "memory_gib": int(meminfo.get("MemTotal", "0 kB").split()[0]) / 1024 / 1024,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_before": os.getloadavg(),
        "nofile": nofile,
        "redis": _command_output([stack.redis.binary, "--version"]),
        "chromium": _command_output([CHROMIUM, "--version"]) if os.path.exists(CHROMIUM) else "",
        "commit": _command_output(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"]),
        "dirty": bool(
            _command_output(
                ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"]
            )
        ),
        "versions": versions,
    }


def run(args: argparse.Namespace) -> dict:
    sizes = {"smoke": scenarios.SMOKE, "medium": scenarios.MEDIUM}.get(args.size, scenarios.FULL)
    if args.profile:
        sizes = dataclasses.replace(sizes, profile=True)
    if args.watchers:
        sizes = dataclasses.replace(
            sizes, watchers=tuple(int(k) for k in args.watchers.split(",") if k.strip())
        )
    wanted = {int(part) for part in args.scenarios.split(",") if part.strip()}
    layers = [layer.strip() for layer in args.layers.split(",") if layer.strip()]
    browser = os.path.exists(CHROMIUM) and not args.no_browser
    nofile = raise_nofile_limit()
    results: dict = {"size": args.size, "command": args.command, "scenarios": {}, "errors": {}}
    started = time.monotonic()

    def attempt(key: str, function, *function_args, **kwargs) -> None:
        print(f"bench: {key} ...", file=sys.stderr, flush=True)
        began = time.monotonic()
        try:
            results["scenarios"][key] = function(*function_args, **kwargs)
        except Exception:
            results["errors"][key] = traceback.format_exc(limit=8)
            print(results["errors"][key], file=sys.stderr, flush=True)
        print(f"bench: {key} took {time.monotonic() - began:.1f} s", file=sys.stderr, flush=True)

    results["database"] = args.database
    with BenchStack(keep_logs=args.keep_logs, database=args.database) as stack:
        # Django's LOGGING (loaded by the stack) would print every bench request.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        print(f"bench: logs in {stack.dir}", file=sys.stderr, flush=True)
        results["machine"] = machine_info(stack, nofile)
        if 1 in wanted:
            attempt("submit", scenarios.scenario_submit, stack, sizes)
        if 4 in wanted:
            attempt("burst", scenarios.scenario_burst, stack, sizes)
        for layer in layers:
            if 2 in wanted or 5 in wanted:
                attempt(f"push-{layer}", scenarios.scenario_push, stack, sizes, layer=layer,
                        browser=browser)  # fmt: skip
        for layer in layers:
            if 3 in wanted or 5 in wanted:
                attempt(f"watchers-{layer}", scenarios.scenario_watchers, stack, sizes, layer=layer)
        if results["errors"]:
            stack.keep_logs = True
            results["logs"] = str(stack.dir)
    results["browser"] = browser
    results["seconds"] = time.monotonic() - started
    results["sizes"] = dict(vars(sizes))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--size", choices=("full", "medium", "smoke"), default="full")
    parser.add_argument("--scenarios", default="1,2,3,4,5", help="comma-separated, 1-5")
    parser.add_argument("--layers", default="core,pubsub", help="channel layers for 2, 3 and 5")
    parser.add_argument("--out", default=str(REPO_ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--no-browser", action="store_true", help="skip the Chromium part of 2")
    parser.add_argument("--keep-logs", action="store_true")
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="postgres: a private PostgreSQL server, with Django's connection pool",
    )
    parser.add_argument(
        "--render", metavar="JSON", help="no run: write the report from --json output"
    )
    parser.add_argument("--watchers", help="scenario 3's socket counts, e.g. 1000,15000")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy on daphne and the worker (see the report)"
    )
    args = parser.parse_args(argv)
    args.command = shlex.join(["python", "-m", "devtools.bench", *(argv or sys.argv[1:])])
    if os.environ.get("BENCH_COMMAND"):  # `make bench` says how it was called
        args.command = os.environ["BENCH_COMMAND"].strip()

    # --render: the notes changed, so write the report again from a run's JSON.
    results = json.loads(Path(args.render).read_text()) if args.render else run(args)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report.render(results))
    print(f"bench: wrote {out} in {results['seconds']:.0f} s", file=sys.stderr)
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
