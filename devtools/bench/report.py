"""docs/benchmarks.md from a run's results: report.md (a string.Template) filled with tables."""

import math
from collections import Counter
from pathlib import Path
from string import Template

TEMPLATE = Path(__file__).with_name("report.md")
NAMES = {"sqlite": "SQLite, 1 web + 1 worker", "postgres": "PostgreSQL, 1 web + 1 worker",
         "postgres-2x2": "PostgreSQL, 2 web + 2 worker (HAProxy)"}  # fmt: skip
APP_ROLES = ("daphne", "worker", "redis", "postgres", "haproxy")


def num(value, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c if isinstance(c, str) else num(c) for c in r) + " |"
              for r in rows]  # fmt: skip
    return "\n".join(lines) if rows else "_Not run (or failed: see the JSON's errors)._"


def spread(runs: list[dict], key: str, stat: str) -> str:
    values = [run[key].get(stat) for run in runs if run[key].get("count")]
    return f"{num(min(values))}–{num(max(values))}" if values else "–"


def met(value, target: float, *, at_least: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "not measured"
    return "**yes**" if (value >= target if at_least else value <= target) else "no"


def render(results: dict) -> str:
    configs = {c["name"]: c.get("scenarios", {}) for c in results["configs"]}
    pg = configs.get("postgres", {})
    targets, runs_1, runs_2, cpu = [], [], [], []
    before = {"sqlite": "p50 35 / p99 190", "postgres": "p50 82 / p99 395"}
    for name, found in configs.items():
        for key, rows in (("submit", runs_1), ("e2e", runs_2)):
            stat = "answer_ms" if key == "submit" else "submit_to_email_ms"
            for number, run in enumerate(found.get(key, {}).get("runs", []), start=1):
                rows.append([NAMES[name], number, run["sent"], run["ok"], run[stat].get("p50"),
                             run[stat].get("p99"), run[stat].get("max"), run["emails"],
                             run["lost"], run["duplicates"], run["frames"], run["refused"],
                             run.get("reconnects", 0),
                             sum(run["socket_errors"].values())])  # fmt: skip
        if "submit" in found:
            s = found["submit"]
            p99 = s["answer_ms"].get("p99")
            targets.append([f"Submit answer p99 ≤ 25 ms at 50/s, {NAMES[name]} (ms)",
                            before.get(name, "–"),
                            f"p50 {num(s['answer_ms'].get('p50'))} / p99 {num(p99)} "
                            f"(runs {spread(s['runs'], 'answer_ms', 'p99')}; "
                            f"n = {s['answer_ms'].get('count', 0):,})", met(p99, 25)])  # fmt: skip
            for run_list in (s["runs"],):
                ok = sum(r["ok"] for r in run_list) or 1
                use = {role: sum(r["cpu_s"].get(role, 0) for r in run_list) * 1000 / ok
                       for role in (*APP_ROLES, "sink", "generator")}  # fmt: skip
                app = sum(use[role] for role in APP_ROLES)
                worker = sum(r["worker_ms_per_email"] for r in run_list) / len(run_list)
                cpu.append([NAMES[name], use["daphne"], worker, use["redis"], use["postgres"],
                            use["haproxy"], app, app * results["sizes"]["rate"] / 1000,
                            use["generator"], use["sink"]])  # fmt: skip
        if "e2e" in found:
            e = found["e2e"]
            p99 = e["submit_to_email_ms"].get("p99")
            lost = sum(r["lost"] for r in e["runs"])
            dupes = sum(r["duplicates"] for r in e["runs"])
            once = lost == 0 and dupes == 0
            targets.append(
                [
                    f"End to end p99 ≤ 1 s at 100/s for 10 s, each once, {NAMES[name]} (ms)",
                    "–",
                    f"p50 {num(e['submit_to_email_ms'].get('p50'))} / p99 "
                    f"{num(p99)}; not arrived {lost}, duplicates {dupes}",
                    "**yes**" if once and p99 is not None and p99 <= 1000 else "no",
                ]
            )
    for key, label in (("drain", "Drain 1,000: ≥ 300 emails/s, 0 lost, 0 duplicates"),
                       ("drain_chaos", "… with a pool process SIGKILLed every 5 s and one Redis "
                                       "restart: 0 lost, 0 duplicates")):  # fmt: skip
        d = pg.get(key)
        if d:
            clean = d["lost"] == 0 and d["duplicates"] == 0
            good = clean and (key == "drain_chaos" or (d["emails_per_s"] or 0) >= 300)
            targets.append([label, "~200/s (closed-loop bench)" if key == "drain" else "–",
                            f"{num(d['emails_per_s'])}/s; not arrived {d['lost']}, duplicates "
                            f"{d['duplicates']} ({d['kills']} kills)",
                            "**yes**" if good else "no"])  # fmt: skip
    push = pg.get("push", {})
    for label, before, part, target in (
        ("Publish → websocket frame p99 ≤ 5 ms under scenario 1's load (ms)",
         "2.1 (no load, closed loop)", push.get("publish_frame"), 5),
        ("Publish → DOM p99 ≤ 15 ms, n ≥ 1,000, under load (ms)", "3.6 (n = 100, no load)",
         push.get("dom"), 15),
    ):  # fmt: skip
        if part and "sent" in part:  # (a run before each publish was accounted for: none)
            p99 = part["ms"].get("p99")
            targets.append([label, before, f"{num(p99)} ({shown(part)})",
                            met(p99, target) if part["lost"] == 0 else "no"])  # fmt: skip
    sockets = pg.get("sockets")
    if sockets:
        targets.append([f"One daphne holds {sockets['asked']:,} sockets", "10,000 (held)",
                        f"{sockets['opened']:,} open", met(sockets["opened"], 10_000,
                                                           at_least=True)])  # fmt: skip
        targets.append(
            [
                "… ≤ 30 KiB each",
                "–",
                num(sockets["kib_per_socket"]),
                met(sockets["kib_per_socket"], 30),
            ]
        )
        targets.append(
            [
                "… opens ≥ 500 a second",
                "–",
                num(sockets["opens_per_s"], 0),
                met(sockets["opens_per_s"], 500, at_least=True),
            ]
        )
    fields = {
        "command": results.get("command", "make bench"), "size": results["size"],
        "minutes": num(results.get("seconds", 0) / 60), **results["sizes"],
        **{f"machine_{k}": (", ".join(f"{x:.2f}" for x in v) if isinstance(v, list) else v)
           for k, v in results["machine"].items()},
        "targets": table(["Target", "Before", "After (this run)", "Met?"], targets),
        "submit_runs": table(["Configuration", "Run", "Sent", "Answered 200", "p50 ms", "p99 ms",
                              "max ms", "Emails", "Not arrived", "Duplicates", "Frames",
                              "Watches refused", "Reconnects (4401)", "Socket errors"], runs_1),
        "e2e_runs": table(["Configuration", "Run", "Sent", "Answered 200", "p50 ms",
                           "p99 ms", "max ms", "Emails", "Not arrived", "Duplicates", "Frames",
                           "Watches refused", "Reconnects (4401)", "Socket errors"], runs_2),
        "cpu": table(["Configuration", "daphne / submission", "worker / email", "Redis / sub.",
                      "PostgreSQL / sub.", "HAProxy / sub.", "app / submission",
                      f"cores needed at {results['sizes']['rate']:g}/s", "generator / sub.",
                      "sink / sub."], cpu),
        "push_table": push_table(push), "drain_table": drain_table(pg),
        "sockets_table": sockets_table(sockets),
        "errors": "\n".join(f"- {c['name']} {key}: `{err.strip().splitlines()[-1]}`"
                            for c in results["configs"] for key, err in c["errors"].items())
        or "None.",
    }  # fmt: skip
    return Template(TEMPLATE.read_text()).safe_substitute(fields)


def shown(part: dict) -> str:
    return (f"{part['sent']:,} sent: {part['delivered']:,} delivered, "
            f"{part['superseded']:,} superseded, {part['lost']:,} lost")  # fmt: skip


def push_table(push: dict) -> str:
    if not push:
        return table([], [])
    rows = [[label, part["sent"], part["delivered"], part["superseded"], part["lost"],
             part["ms"].get("p50"), part["ms"].get("p99"), part["ms"].get("max")]
            for label, part in (("publish → frame", push.get("publish_frame")),
                                ("change → frame", push.get("change_frame")),
                                ("change → poll (every 2 s, as the page polls)",
                                 push.get("change_poll")),
                                ("publish → DOM (Chromium)", push.get("dom")))
            if part and "sent" in part]  # fmt: skip
    background = push["background"]["answer_ms"]
    rows.append(["(the submit load meanwhile: answer)", background.get("count", 0), "", "", "",
                 background.get("p50"), background.get("p99"), background.get("max")])  # fmt: skip
    return table(["Measure", "Sent", "Delivered", "Superseded", "Lost", "p50 ms", "p99 ms",
                  "max ms"], rows)  # fmt: skip


def drain_table(pg: dict) -> str:
    drains = [d for d in (pg.get("drain"), pg.get("drain_chaos")) if d]
    rows = [[("with kills and a Redis restart" if d["chaos"] else "plain"), d["addresses"],
             d["emails"], d["lost"], d["duplicates"],
             at_count(d["not_once"]) if "not_once" in d else "not recorded",
             d["seconds"], d["emails_per_s"], d["worker_ms_per_email"], d["kills"],
             d.get("set_aside", {}).get("cancelled", "–")]
            for d in drains]  # fmt: skip
    out = table(["Drain", "Queued", "Emails", "Not arrived", "Duplicates",
                 "Rows not sent once, at the count", "First → last s", "Emails/s",
                 "worker CPU-ms / email", "Pool kills", "Earlier rows cancelled"],
                rows)  # fmt: skip
    notes = [not_once_note(row, "chaos" if d["chaos"] else "plain")
             for d in drains for row in (d.get("not_once") or [])[:20]]  # fmt: skip
    return out + ("\n\n" + "\n".join(notes) if notes else "")


def not_once_note(row: dict, drain: str) -> str:
    """One address not sent exactly once, as its row was at the count."""
    note = (f"- {row['address']} ({drain}): {row['emails']} emails; `{row['status']}`, "
            f"{row['attempts']} attempts, untouched {row['untouched_s']:.0f} s; "
            f"{' → '.join(row['timeline'])}")  # fmt: skip
    return note + (f"; {row['failure_reason']}" if row["failure_reason"] else "")


def at_count(rows: list[dict]) -> str:
    """The statuses of the rows not sent exactly once, e.g. "sending × 2" ("–" when none)."""
    statuses = Counter(f"{row['status']} ({row['emails']} emails)" for row in rows)
    return ", ".join(f"{status} × {n}" for status, n in sorted(statuses.items())) or "–"


def sockets_table(s: dict | None) -> str:
    if not s:
        return table([], [])
    return table(["Sockets asked", "Open", "Open errors", "Seconds to open", "Opens/s",
                  "KiB each (daphne RSS)", "Frames delivered", "daphne CPU-ms / frame",
                  "publish → frame p99 ms"],
                 [[s["asked"], s["opened"], str(s["open_errors"] or 0), s["open_seconds"],
                   s["opens_per_s"], s["kib_per_socket"], s["frames"], s["daphne_ms_per_frame"],
                   s["publish_to_frame_ms"].get("p99")]])  # fmt: skip
