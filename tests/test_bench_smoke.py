"""The bench (devtools/bench) at tiny sizes, so it cannot rot.

One `python -m devtools.bench --size smoke` run starts a stack per configuration (the
tutorial's shape, the baseline; the app on PostgreSQL; the app on SQLite) and runs every
scenario; the tests check that each completed and counted right, and that the report reads
the app against the baseline of the same run. Never a timing: speed is the full bench's
business (docs/benchmarks.md).
"""

import json
import os
import re
import subprocess
import sys

import pytest

from devtools.bench.profile import summarize
from devtools.bench.report import render, render_results
from devtools.bench.scenarios import PROBES, SMOKE, accounted, percentile, summarize_ms
from devtools.browser import CHROMIUM
from devtools.processes import REPO_ROOT
from tests.session_env import require_binary

pytestmark = pytest.mark.timeout(420)

ROLES = ("daphne", "worker", "redis", "postgres", "sink", "haproxy", "generator")
RATE = str(SMOKE.rates[0])


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    # The bench brings its own Redis and databases: none of this session's.
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("REDIS_URL", "DATABASE_URL", "DJANGO_ALLOW_ASYNC_UNSAFE")
    }
    argv = [sys.executable, "-m", "devtools.bench", "--size", "smoke",
            "--out", str(out / "benchmarks.md"), "--json", str(out / "results.json")]  # fmt: skip
    proc = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert (out / "results.json").exists(), f"the bench wrote no results:\n{proc.stderr[-5000:]}"
    results = json.loads((out / "results.json").read_text())
    configs = {config["name"]: config for config in results["configs"]}
    return proc, configs, (out / "benchmarks.md").read_text()


def test_every_scenario_of_every_configuration_runs_without_error(smoke):
    proc, configs, report = smoke
    assert {name: config["errors"] for name, config in configs.items()} == {
        "baseline": {}, "postgres": {}, "sqlite": {}
    }, proc.stderr[-5000:]  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-5000:]
    # The clients end their tasks cleanly: asyncio logs no exception left unretrieved.
    assert "never retrieved" not in proc.stderr, proc.stderr[-5000:]
    assert set(configs["baseline"]["scenarios"]) == {"submit", "ladder", "drain", "page"}
    assert set(configs["sqlite"]["scenarios"]) == {"submit"}
    assert set(configs["postgres"]["scenarios"]) == {
        "submit", "ladder", "drain", "drain_chaos", "page", "push", "sockets"
    }  # fmt: skip
    for section in ("## Targets", "## Side by side", "### Draining", "### The highest",
                    "### What follows", "## The app alone"):  # fmt: skip
        assert section in report
    assert "Not run" not in report and "$" not in report


def submit_runs(configs):
    for name, config in configs.items():
        for rate, at_rate in config["scenarios"]["submit"].items():
            for run in at_rate["runs"]:
                yield name, f"submit {rate}", run
        for step in config["scenarios"].get("ladder", {}).get("steps", []):
            yield name, f"ladder {step['rate']}", step


def test_open_loop_submissions_are_all_answered_and_emailed_once(smoke):
    _, configs, _ = smoke
    assert set(configs["baseline"]["scenarios"]["submit"]) == {RATE}
    light: dict[str, float] = {}
    for name, key, run in submit_runs(configs):
        # The baseline's visitor posts the form and follows its redirect; the app's answers
        # the htmx POST with the card, and its page watches the card over its socket.
        assert run["codes"] == {"302" if name == "baseline" else "200": run["sent"]}, (name, key)
        assert run["sent"] == run["ok"] == run["addresses"] == run["emails"] > 0, (name, key)
        assert run["lost"] == run["duplicates"] == 0, (name, key)
        assert run["socket_errors"] == {}, (name, key)
        assert (run["frames"] > 0) == (name != "baseline"), (name, key)
        assert set(run["cpu_s"]) == set(ROLES), (name, key)
        assert min(run["cpu_s"].values()) >= 0, (name, key)
        # Every run keeps the web, the worker and the generator busy for well over a clock
        # tick (10 ms); the others may idle below it in a run this small, so they are summed.
        for role in ("daphne", "worker", "generator"):
            assert run["cpu_s"][role] > 0, (name, key, role)
        if configs[name]["database"] != "postgres":
            assert run["cpu_s"]["postgres"] == 0, (name, key)
        assert run["cpu_s"]["haproxy"] == 0, (name, key)
        for role in ROLES:
            light[role] = light.get(role, 0) + run["cpu_s"][role]
    assert min(cpu for role, cpu in light.items() if role != "haproxy") > 0, light
    for name in ("baseline", "postgres"):
        ladder = configs[name]["scenarios"]["ladder"]
        assert 1 <= len(ladder["steps"]) <= len(SMOKE.ladder), name
        assert ladder["held"] in (None, *SMOKE.ladder), name


def test_the_report_reads_every_figure_of_the_app_against_the_baseline(smoke):
    _, _, report = smoke
    side = report[report.index("## Side by side") : report.index("## The app alone")]
    labels = {line.split(" | ")[0].strip("| :") for line in side.splitlines()}
    assert {"tutorial's code (baseline)", "ours, PostgreSQL", "ours, SQLite default"} <= labels
    # The baseline against itself, the app against it: a ratio by each figure of each table
    # (but the highest rate held: it has one only when both held a step, and that is timing).
    ratioed = side[: side.index("### The highest")] + side[side.index("### What follows") :]
    for row in [line for line in ratioed.splitlines() if line.startswith("| ours")]:
        assert re.search(r"\(\d+\.\d\d×\)", row), row
    assert re.search(r"\| tutorial's code \(baseline\) \| [\d,]+ × 302 \|", side)
    targets = report[report.index("## Targets") : report.index("## Method")]
    # (The highest rate held has a ratio only when both held a step: that is timing.)
    assert "| highest rate with answer p99 < 250 ms" in targets
    for target in ("app CPU per submission", "worker CPU per email", "draining", "answer p99 at",
                   "SQLite default", "opening the page's socket"):  # fmt: skip
        line = next(line for line in targets.splitlines() if target in line)
        assert re.search(r"\| (worst )?\d+\.\d\d×", line), line  # a ratio measured in this run
        assert line.rstrip().endswith(("| **yes** |", "| no |")), line


def test_drains_send_each_email_once_also_through_kills_and_a_redis_restart(smoke):
    _, configs, _ = smoke
    drains = {key: configs["postgres"]["scenarios"][key] for key in ("drain", "drain_chaos")}
    drains["baseline"] = configs["baseline"]["scenarios"]["drain"]
    for key, drain in drains.items():
        assert drain["addresses"] == drain["emails"] == SMOKE.drain, key
        assert drain["lost"] == drain["duplicates"] == 0, key
        assert drain["worker_ms_per_email"] > 0, key
    for key in ("drain", "drain_chaos"):
        assert drains[key]["not_once"] == [], key  # each listed with its row's status otherwise
    chaos = drains["drain_chaos"]
    assert chaos["redis_restarts"] == 1 and chaos["kills"] >= 1
    assert chaos["set_aside"]["cancelled"] == 0  # nothing waiting is left between the two


def test_the_page_after_an_answer_is_measured_for_both(smoke):
    _, configs, _ = smoke
    for name in ("baseline", "postgres"):
        page = configs[name]["scenarios"]["page"]
        assert page["done"] == page["asked"] == SMOKE.pages, name
        assert page["daphne_ms"] > 0, name
    # Each page named the version its card shows, as live.js does: no snapshot frame came
    # before the probe's answer, and the probe was measured alone on every socket.
    page = configs["postgres"]["scenarios"]["page"]
    assert page["frames_on_open"] == 0
    assert page["probed"] == PROBES * SMOKE.pages


def test_the_drain_table_says_what_became_of_each_email_not_sent_once():
    stuck = {"address": "k-7@bench.test", "emails": 0, "status": "sending", "attempts": 1,
             "untouched_s": 80.4, "claimed_by": "w@h/1", "failure_reason": "",
             "timeline": ["queued", "sending"]}  # fmt: skip
    twice = {**stuck, "address": "k-9@bench.test", "emails": 2, "status": "sent", "attempts": 2,
             "timeline": ["queued", "sending", "sending", "sent"]}  # fmt: skip
    drain = {"chaos": True, "addresses": 10, "emails": 10, "lost": 1, "duplicates": 1,
             "seconds": 1.0, "emails_per_s": 9.0, "worker_ms_per_email": 1.0, "kills": 2,
             "not_once": [stuck, twice], "set_aside": {"cancelled": 3, "sending": 0}}  # fmt: skip

    def drain_section(drain: dict) -> str:
        results = {"size": "smoke", "machine": {}, "sizes": {"rate": 1},
                   "configs": [{"name": "postgres", "errors": {},
                                "scenarios": {"drain_chaos": drain}}]}  # fmt: skip
        report = render_results(results)
        return report[report.index("### Draining") : report.index("### The highest")]

    text = drain_section(drain)
    assert "| sending (0 emails) × 1, sent (2 emails) × 1 |" in text
    assert "- k-7@bench.test (chaos): 0 emails; `sending`, 1 attempts, untouched 80 s; " \
           "queued → sending" in text  # fmt: skip
    assert "- k-9@bench.test (chaos): 2 emails; `sent`, 2 attempts" in text
    older = {key: value for key, value in drain.items() if key not in ("not_once", "set_aside")}
    assert "| not recorded |" in drain_section(older)  # a run from before


def test_every_publish_and_change_is_accounted_for_and_none_is_lost(smoke):
    _, configs, _ = smoke
    push = configs["postgres"]["scenarios"]["push"]
    parts = {key: push[key] for key in ("publish_frame", "change_frame", "change_poll")}
    for key, part in parts.items():
        assert part["sent"] == SMOKE.pushes, key
        assert part["delivered"] + part["superseded"] + part["lost"] == part["sent"], key
        assert part["lost"] == 0, key
        assert part["ms"]["count"] == part["delivered"] + part["superseded"], key
    # Nothing re-reads the published card newer than its publishes: each shows as itself.
    assert parts["publish_frame"]["delivered"] == SMOKE.pushes
    assert push["polls"] > 0
    assert push["background"]["answer_ms"]["count"] > 0
    assert push["app_cores"] > 0  # the share of the cores the app used meanwhile


def test_publishes_reach_the_dom_in_chromium(smoke):
    _, configs, _ = smoke
    require_binary(CHROMIUM, "apt-get install chromium")
    dom = configs["postgres"]["scenarios"]["push"]["dom"]
    assert dom["sent"] == SMOKE.doms
    assert dom["delivered"] + dom["superseded"] + dom["lost"] == dom["sent"]
    assert dom["lost"] == 0


def test_one_daphne_opens_every_socket_and_delivers_a_frame_to_each(smoke):
    _, configs, _ = smoke
    sockets = configs["postgres"]["scenarios"]["sockets"]
    # Open: its watch taken (the probe's answer came), with no snapshot frame (the version
    # named is the card's); then the frame published to each arrives: each watch joined.
    assert sockets["opened"] == sockets["frames"] == SMOKE.sockets
    assert sockets["open_errors"] == {}
    assert sockets["frames_on_open"] == 0


def test_percentiles_interpolate_between_ranks():
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([5.0], 0.99) == 5.0
    summary = summarize_ms([0.001, 0.002, 0.003])
    assert summary["count"] == 3
    assert summary["p50"] == pytest.approx(2.0)
    assert summarize_ms([]) == {"count": 0}


def test_each_version_sent_is_delivered_superseded_or_lost_once():
    sent = {1: 10.0, 2: 10.1, 3: 10.2, 4: 10.3}
    # 1 shows as itself; 2 never does, 3 shows first (2 superseded, shown then); 4 never.
    part = accounted(sent, [(1, 10.01), (3, 10.25), (2, 10.3), (None, 10.4)])
    assert {k: part[k] for k in ("sent", "delivered", "superseded", "lost")} == {
        "sent": 4, "delivered": 2, "superseded": 1, "lost": 1
    }  # fmt: skip
    assert part["ms"]["count"] == 3
    assert part["ms"]["max"] == pytest.approx(150.0)


def test_the_profile_summary_counts_samples_by_function_and_group():
    raw = "\n".join([
        'process 1:"daphne";_run_module_as_main (<frozen runpy>:198);'
        "run (twisted/internet/base.py:10);render (django/template/base.py:5);"
        "execute (django/db/backends/utils.py:7) 6",
        'process 1:"daphne";run (twisted/internet/base.py:10);render (django/template/base.py:5) 3',
        'process 1:"daphne";run (twisted/internet/base.py:12);loads (json/decoder.py:3) 1',
        "not a stack line",
    ])  # fmt: skip
    summary = summarize(raw, top=3)
    assert summary["samples"] == 10
    # Innermost frame that names a group: the query inside the template is the database's.
    assert summary["groups"] == [
        ("database", 60.0), ("template rendering", 30.0), ("websocket / ASGI server", 10.0)
    ]  # fmt: skip
    # Lines are folded: run's two call sites are one function, inclusive 100 %, self 0; the
    # trunk (here runpy's entry point) is left out of this table.
    assert summary["functions"] == [
        ("run (twisted/internet/base.py)", 100.0, 0.0),
        ("render (django/template/base.py)", 90.0, 30.0),
        ("execute (django/db/backends/utils.py)", 60.0, 60.0),
    ]
    assert summary["hot"] == [("execute (django/db/backends/utils.py)", 60.0, 60.0)]
    daphne = {"role": "daphne", "ms": 2.5, "per": (4, "answer"), **summary}
    runs = [{"name": "baseline", "rate": 25, "processes": [daphne]}]
    page = render("profile.md", {"runs": runs, "machine": {}, "sizes": {}})
    assert "## baseline, daphne: 2.5 CPU-ms per answer (10 samples)" in page
    assert "| database | 60.0 % |" in page
    assert "| `render (django/template/base.py)` | 90.0 | 30.0 |" in page


def test_a_rate_held_against_a_baseline_that_held_none_is_read_as_a_lower_bound():
    """The baseline held not even its first step (10/s): 15/s held is above 1.5× of it."""
    from devtools.bench.report import held, held_met, side_by_side

    steps = [{"rate": 10, "answer_ms": {"p99": 266.0}, "backlog": 0}]
    configs = {
        "baseline": {"scenarios": {"ladder": {"held": None, "steps": steps}}},
        "postgres": {"scenarios": {"ladder": {"held": 15, "steps": steps}}},
    }
    ladder = next(row for row in side_by_side(configs)["ladders"] if row["held"] == 15)
    assert ladder["x_held"] is None and ladder["x_held_above"] == 1.5
    assert held_met(ladder) is True and held(ladder).startswith("above 1.50×")
