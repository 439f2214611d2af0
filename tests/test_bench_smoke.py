"""The bench (devtools/bench) at tiny sizes, so it cannot rot.

One `python -m devtools.bench --size smoke` run starts its own stack (Redis,
SMTP sink, worker, daphne, Chromium) and runs every scenario; the tests check
that each completed and counted right. Never a timing: speed is the full
bench's business (docs/benchmarks.md).
"""

import contextlib
import json
import os
import signal
import subprocess
import sys

import psutil
import pytest

from devtools.bench.report import recommend_layer
from devtools.bench.scenarios import SMOKE
from devtools.bench.stats import percentile, summarize_ms
from devtools.browser import CHROMIUM
from devtools.processes import REPO_ROOT

# Starting the stack several times over (and Chromium) on a busy 2-core machine.
pytestmark = pytest.mark.timeout(420)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid``, parents before their children."""
    with contextlib.suppress(psutil.NoSuchProcess):
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    return []


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    # The bench brings its own Redis and database: none of this session's.
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("REDIS_URL", "DATABASE_URL", "DJANGO_ALLOW_ASYNC_UNSAFE")
    }
    argv = [
        sys.executable, "-m", "devtools.bench", "--size", "smoke",
        "--out", str(out / "benchmarks.md"), "--json", str(out / "results.json"),
    ]  # fmt: skip
    bench = subprocess.Popen(
        argv, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        stdout, stderr = bench.communicate(timeout=400)
    except subprocess.TimeoutExpired:
        # The bench starts Redis, the worker and daphne in their own sessions: killing
        # its process group would leave them running. Kill the whole tree, leaves first.
        for pid in reversed(_descendants(bench.pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        bench.kill()
        stdout, stderr = bench.communicate()
        pytest.fail(f"the bench smoke run took over 400 s:\n{stderr[-5000:]}")
    proc = subprocess.CompletedProcess(argv, bench.returncode, stdout, stderr)
    results_file = out / "results.json"
    assert results_file.exists(), f"the bench wrote no results:\n{proc.stderr[-5000:]}"
    results = json.loads(results_file.read_text())
    return proc, results, (out / "benchmarks.md").read_text()


def test_every_scenario_runs_without_error(smoke):
    proc, results, report = smoke
    assert results["errors"] == {}, proc.stderr[-5000:]
    assert proc.returncode == 0, proc.stderr[-5000:]
    expected = {"submit", "burst", "push-core", "push-pubsub", "watchers-core", "watchers-pubsub"}
    assert set(results["scenarios"]) == expected
    for section in ("## 1.", "## 2.", "## 3.", "## 4.", "## 5.", "## Targets"):
        assert section in report
    assert "Not run." not in report


def test_submit_answers_every_request_and_stores_each_once(smoke):
    _, results, _ = smoke
    phases = results["scenarios"]["submit"]["phases"]
    for name, expected_status in (("async", "queued"), ("async_paced", "queued"), ("sync", "sent")):
        phase = phases[name]
        assert phase["ok"] > 0, name
        assert phase["errors"] == {}, name
        assert set(phase["codes"]) == {"200"}, name
        assert phase["rows"] == phase["ok"], name
        assert phase["statuses"] == {expected_status: phase["ok"]}, name
        assert phase["latency_ms"]["count"] == phase["ok"]
    # The old way sends inside the request: one email per answer.
    assert phases["sync"]["emails"] == phases["sync"]["ok"]


def test_push_delivers_every_update_in_order(smoke):
    _, results, _ = smoke
    for layer in ("core", "pubsub"):
        push = results["scenarios"][f"push-{layer}"]
        frames = push["frames"]
        assert frames["updates"] == SMOKE.push_updates, layer
        assert frames["delivered"] == SMOKE.push_updates, layer
        assert frames["lost"] == 0, layer
        assert frames["out_of_order"] == 0, layer
        assert frames["polls"] > 0, layer
        assert frames["poll_staleness_ms"]["count"] > 0, layer


def test_push_reaches_the_dom_in_chromium(smoke):
    _, results, _ = smoke
    if not os.path.exists(CHROMIUM):
        if os.environ.get("REQUIRE_BROWSER") == "1" or os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    assert results["browser"] is True
    for layer in ("core", "pubsub"):
        dom = results["scenarios"][f"push-{layer}"]["dom"]
        assert dom["updates"] == SMOKE.dom_updates, layer
        assert dom["shown"] == SMOKE.dom_updates, layer
        assert dom["skipped"] == 0, layer


def test_watchers_all_open_and_all_get_their_update(smoke):
    _, results, _ = smoke
    for layer in ("core", "pubsub"):
        steps = results["scenarios"][f"watchers-{layer}"]["steps"]
        assert [step["watchers"] for step in steps] == list(SMOKE.watchers)
        for step in steps:
            assert step["open_errors"] == {}, (layer, step["open_errors"])
            assert step["opened"] == step["watchers"], layer
            assert step["published"] == step["opened"], layer
            assert step["delivered"] == step["opened"], layer
            assert step["lost"] == 0, layer
            assert step["delivery_ms"]["count"] == step["delivered"]


def test_burst_sends_each_email_exactly_once(smoke):
    _, results, _ = smoke
    runs = results["scenarios"]["burst"]["runs"]
    assert [run["kind"] for run in runs] == ["end to end"] + ["queued drain"] * len(
        SMOKE.drain_workers
    )
    for run in runs:
        assert run["submitted"] == SMOKE.burst, run["kind"]
        assert run["rows"] == SMOKE.burst
        assert run["rows_sent"] == SMOKE.burst
        assert run["emails"] == SMOKE.burst
        assert run["unique_emails"] == SMOKE.burst
        assert run["duplicates"] == 0
        assert run["lost"] == 0


def test_the_layer_comparison_names_a_layer_that_lost_nothing(smoke):
    _, results, report = smoke
    layer, why = recommend_layer(results)
    assert layer in ("core", "pubsub")
    assert "lost nothing" in why
    assert why in report


def test_percentiles_interpolate_between_ranks():
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([5.0], 0.99) == 5.0
    summary = summarize_ms([0.001, 0.002, 0.003])
    assert summary["count"] == 3
    assert summary["p50"] == pytest.approx(2.0)
    assert summarize_ms([]) == {"count": 0}


@pytest.mark.postgres_only
def test_the_bench_runs_on_postgresql_too(tmp_path):
    """`--database postgres`: the same scenarios on a private PostgreSQL server."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("REDIS_URL", "DATABASE_URL", "DJANGO_ALLOW_ASYNC_UNSAFE")
    }
    proc = subprocess.run(
        [sys.executable, "-m", "devtools.bench", "--size", "smoke", "--scenarios", "1,4",
         "--database", "postgres", "--out", str(tmp_path / "benchmarks.md"),
         "--json", str(tmp_path / "results.json")],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["errors"] == {}, proc.stderr[-5000:]
    assert results["database"] == "postgres"
    assert set(results["scenarios"]) == {"submit", "burst"}
    assert "PostgreSQL" in (tmp_path / "benchmarks.md").read_text()


def test_the_open_loop_bench_answers_every_scheduled_submission(tmp_path):
    """devtools/bench/openloop.py at a tiny size: counts, never timings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("REDIS_URL", "DATABASE_URL", "DJANGO_ALLOW_ASYNC_UNSAFE")
    }
    out = tmp_path / "openloop.json"
    proc = subprocess.run(
        [sys.executable, "-m", "devtools.bench.openloop", "--databases", "sqlite",
         "--rate", "10", "--seconds", "1", "--sessions", "3", "--repeats", "2",
         "--json", str(out)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-5000:]
    runs = json.loads(out.read_text())["results"][0]["runs"]
    assert len(runs) == 2
    for run in runs:
        assert run["sent"] == len(run["samples"]) > 0
        assert run["ok"] == run["sent"] and run["failed"] == 0
        assert {code for _, _, code in run["samples"]} == {200}
