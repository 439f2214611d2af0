"""docs/benchmarks.md and docs/profile.md: Django templates (report.md, profile.md) filled in."""

import math
import re
from collections import Counter
from pathlib import Path

from django.template import Context, Engine, Library

NAMES = {"sqlite": "SQLite, 1 web + 1 worker", "postgres": "PostgreSQL, 1 web + 1 worker",
         "postgres-2x2": "PostgreSQL, 2 web + 2 worker (HAProxy)"}  # fmt: skip
BEFORE = {"sqlite": "p50 35 / p99 190", "postgres": "p50 82 / p99 395"}  # the figures
APP_ROLES = ("daphne", "worker", "redis", "postgres", "haproxy")
register = Library()  # the templates' filters, below


def missing(value) -> bool:
    return value in (None, "") or (isinstance(value, float) and math.isnan(value))


@register.filter
def num(value, digits: int = 1) -> str:
    if missing(value):
        return "–"
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


@register.filter
def met(good) -> str:
    return "not measured" if good is None else "**yes**" if good else "no"


@register.filter
def loads(values: list[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values or [])


@register.filter
def total(counts: dict) -> int:
    return sum(counts.values())


def within(value, target: float, *, at_least: bool = False) -> bool | None:
    if missing(value):
        return None
    return value >= target if at_least else value <= target


def render(template: str, context: dict) -> str:
    engine = Engine(dirs=[str(Path(__file__).parent)], builtins=["devtools.bench.report"])
    text = engine.get_template(template).render(Context(context, autoescape=False, use_l10n=False))
    return re.sub(r"\n{3,}", "\n\n", text.strip() + "\n")  # a loop's last newline


def config(c: dict, rate: float) -> dict:
    """One configuration's scenarios, with what the report derives from them."""
    found = c.get("scenarios", {})
    out = {"name": c["name"], "label": NAMES[c["name"]], "before": BEFORE.get(c["name"], "–")}
    if "submit" in found:
        runs = found["submit"]["runs"]
        p99s = [run["answer_ms"]["p99"] for run in runs if run["answer_ms"].get("count")]
        ok = sum(run["ok"] for run in runs) or 1
        use = {role: sum(r["cpu_s"].get(role, 0) for r in runs) * 1000 / ok
               for role in (*APP_ROLES, "sink", "generator")}  # fmt: skip
        app = sum(use[role] for role in APP_ROLES)  # the worker's per submission here
        use["worker"] = sum(r["worker_ms_per_email"] for r in runs) / len(runs)  # per email
        out.update(submit=found["submit"], spread=f"{num(min(p99s))}–{num(max(p99s))}"
                   if p99s else "–", cpu={**use, "app": app, "cores": app * rate / 1000},
                   submit_met=within(found["submit"]["answer_ms"].get("p99"), 25))  # fmt: skip
    if "e2e" in found:
        runs = found["e2e"]["runs"]
        lost, dupes = sum(r["lost"] for r in runs), sum(r["duplicates"] for r in runs)
        p99 = within(found["e2e"]["submit_to_email_ms"].get("p99"), 1000)
        out.update(e2e=found["e2e"], lost=lost, dupes=dupes, e2e_met=lost == dupes == 0 and p99)
    for key in ("drain", "drain_chaos"):
        if d := found.get(key):
            fast = key == "drain_chaos" or (d["emails_per_s"] or 0) >= 300
            out[key] = {**d, "met": d["lost"] == d["duplicates"] == 0 and fast}
            out.setdefault("drains", []).append({**d, "at_count": at_count(d.get("not_once"))})
    if push := found.get("push"):
        parts = (("publish → frame", "publish_frame"), ("change → frame", "change_frame"),
                 ("change → poll (every 2 s, as the page polls)", "change_poll"),
                 ("publish → DOM (Chromium)", "dom"))  # fmt: skip
        out["push"] = {**push, "parts": [(label, push[key]) for label, key in parts
                                         if push.get(key) and "sent" in push[key]]}  # fmt: skip
        for key, target in (("publish_frame", 5), ("dom", 15)):
            if push.get(key) and "sent" in push[key]:
                good = within(push[key]["ms"].get("p99"), target)
                out[f"{key}_met"] = good if push[key]["lost"] == 0 else False
    if s := found.get("sockets"):
        out["sockets"] = {**s, "met": [within(s["opened"], 10_000, at_least=True),
                                       within(s["kib_per_socket"], 30),
                                       within(s["opens_per_s"], 500, at_least=True)]}  # fmt: skip
    return out


def at_count(rows: list[dict] | None) -> str:
    """The statuses of a drain's rows not sent exactly once, e.g. "sending (0 emails) × 2"."""
    if rows is None:
        return "not recorded"  # a run from before they were
    statuses = Counter(f"{row['status']} ({row['emails']} emails)" for row in rows)
    return ", ".join(f"{status} × {n}" for status, n in sorted(statuses.items())) or "–"


def render_results(results: dict) -> str:
    configs = [config(c, results["sizes"]["rate"]) for c in results["configs"]]
    pg = next((c for c in configs if c["name"] == "postgres"), {})
    errors = [f"{c['name']} {key}: `{error.strip().splitlines()[-1]}`"
              for c in results["configs"] for key, error in c["errors"].items()]  # fmt: skip
    return render("report.md", {**results, "configs": configs, "pg": pg,
                                "minutes": results.get("seconds", 0) / 60, "errors": errors,
                                "command": results.get("command", "make bench")})  # fmt: skip
