"""``python -m devtools.bench``: the open-loop bench; writes docs/benchmarks.md and .json.

    python -m devtools.bench                 # every configuration, full size (make bench)
    python -m devtools.bench --quick         # the same, shorter runs (minutes)
    python -m devtools.bench --size smoke    # tiny counts, for tests/test_bench_smoke.py
    python -m devtools.bench --configs baseline,postgres --scenarios submit,page
    python -m devtools.bench --profile /tmp/prof --configs baseline,postgres   # py-spy, and
                                             # docs/profile.md: no figures

Each configuration (the tutorial's baseline; the app on PostgreSQL and on SQLite)
runs in its own process with its own stack, one after the other in one run. Exit
status 1 when a scenario failed (its error is in the JSON).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from devtools.bench import profile, report, scenarios
from devtools.processes import REPO_ROOT

# name: (database, the Django project, scenarios run there, in order). The baseline is the
# tutorial's shape (devtools/bench/baseline); every figure of the others is read against it.
CONFIGS = {
    "baseline": ("sqlite", "devtools.bench.baseline", "submit,ladder,drain,page"),
    "postgres": ("postgres", "django_celery", "submit,ladder,drain,page,push,sockets"),
    "sqlite": ("sqlite", "django_celery", "submit"),
}
SCENARIOS = "submit,ladder,drain,page,push,sockets"
SIZES = {"full": scenarios.FULL, "quick": scenarios.QUICK, "smoke": scenarios.SMOKE}


def run_config(name: str, sizes: scenarios.Sizes, wanted: set[str], browser: bool) -> dict:
    from devtools.bench.stack import BenchStack, raise_nofile_limit

    database, app, order = CONFIGS[name]
    tutorial = name == "baseline"
    raise_nofile_limit()
    out = {"name": name, "database": database, "scenarios": {}, "errors": {}}

    def attempt(key: str, function, *args, **kwargs) -> None:
        began = time.monotonic()
        print(f"bench: {name} {key} ...", file=sys.stderr, flush=True)
        try:
            out["scenarios"][key] = function(*args, **kwargs)
        except Exception:
            out["errors"][key] = traceback.format_exc(limit=6)
            print(out["errors"][key], file=sys.stderr, flush=True)
        print(f"bench: {name} {key} {time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)

    with BenchStack(database=database, app=app) as stack:
        url = stack.start_web(1)
        stack.start_workers(1)
        for key in [k for k in order.split(",") if k in wanted]:
            if key in ("submit", "ladder", "page"):
                function = getattr(scenarios, f"scenario_{key}")
                attempt(key, function, stack, url, sizes, tutorial=tutorial)
            elif key == "drain" and tutorial:
                attempt("drain", scenarios.scenario_drain_baseline, stack, sizes)
            elif key == "drain":
                attempt("drain", scenarios.scenario_drain, stack, sizes, chaos=False)
                attempt("drain_chaos", scenarios.scenario_drain, stack, sizes, chaos=True)
            elif key == "push":
                stack.start_workers(1)  # the drains stopped it
                attempt("push", scenarios.scenario_push, stack, url, sizes, browser=browser)
            elif key == "sockets":  # a fresh daphne, no worker: the sockets alone
                stack.stop_workers()
                url = stack.start_web(1)
                attempt("sockets", scenarios.scenario_sockets, stack, url, sizes)
    return out


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                  .splitlines() if line.startswith("model name")), "?")  # fmt: skip
    git = ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"]
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "cores": os.cpu_count(),
        "cpu": model, "load_before": [round(x, 2) for x in os.getloadavg()],
        "commit": subprocess.run(git, capture_output=True, text=True).stdout.strip(),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.bench", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--size", choices=tuple(SIZES), default="full")
    parser.add_argument("--quick", action="store_const", dest="size", const="quick")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--scenarios", default=SCENARIOS)
    parser.add_argument("--no-browser", action="store_true", help="push without Chromium")
    parser.add_argument("--out", default=str(REPO_ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--json", default=str(REPO_ROOT / "docs" / "benchmarks.json"))
    parser.add_argument("--render", action="store_true", help="no run: the report from --json")
    parser.add_argument("--profile", metavar="DIR", help="a separate, unmeasured py-spy run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--profile-config", help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    sizes, wanted = SIZES[args.size], set(args.scenarios.split(","))
    command = os.environ.get("BENCH_COMMAND", " ".join(["python -m devtools.bench", *argv]))
    if args.profile and args.profile_config:  # one configuration, in this process
        name = args.profile_config
        profile.profile_config(Path(args.profile), sizes, name, CONFIGS[name])
        return 0
    if args.profile:
        configs = args.configs.split(",")
        return profile.profile(Path(args.profile), args.size, sizes, command, machine(), configs)
    if args.child:  # one configuration, in this process: Django's settings load once per process
        result = run_config(args.child, sizes, wanted, browser=not args.no_browser)
        Path(args.json).write_text(json.dumps(result))
        return 0
    if args.render:
        results = json.loads(Path(args.json).read_text())
    else:
        started = time.monotonic()
        results = {"size": args.size, "machine": machine(), "sizes": vars(sizes), "configs": []}
        results["command"] = command
        for name in args.configs.split(","):
            with tempfile.NamedTemporaryFile(suffix=".json") as part:
                child = [sys.executable, "-m", "devtools.bench", "--child", name, "--size",
                         args.size, "--scenarios", args.scenarios, "--json", part.name,
                         *["--no-browser"] * args.no_browser]  # fmt: skip
                code = subprocess.run(child, cwd=REPO_ROOT).returncode
                text = Path(part.name).read_text()
                failed = {"name": name, "errors": {"all": f"exit {code}"}}
                results["configs"].append(json.loads(text) if text else failed)
        results["machine"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
        results["seconds"] = time.monotonic() - started
        Path(args.json).write_text(json.dumps(results, default=str))
    Path(args.out).write_text(report.render_results(results))
    print(f"bench: wrote {args.out} and {args.json}", file=sys.stderr)
    return 1 if any(config["errors"] for config in results["configs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
