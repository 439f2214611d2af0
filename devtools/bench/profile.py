"""``--profile DIR``: py-spy on daphne and the worker node under scenario 1's load, no figures.

Writes flame graphs (``ROLE.svg``), py-spy's collapsed stacks (``ROLE.txt``, ``--format
raw``) and docs/profile.md: per process, the functions with the largest share of samples
and the groups (template rendering, database, ...) that explain where the CPU goes.
"""

import json
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from devtools.processes import REPO_ROOT

# A sample whose innermost frame is one of these waits: py-spy's idle detection (a heuristic)
# may count such a thread as running; then it is idle time, or CPU spent in the system call.
WAITING = re.compile(r"\.(select|wait|poll|readinto|_recv|recv_into|recv|sleep|acquire)$")
# Else it goes to the group of its innermost frame that names one (py-spy's short paths).
GROUPS = {
    "template rendering": ("django/template/", "django/templatetags/", "django/forms/"),
    "database": ("django/db/", "psycopg", "sqlite3/"),
    "channel layer / Redis": ("channels_redis/", "redis/", "channels/layers", "msgpack/"),
    "Celery machinery": ("celery/", "kombu/", "billiard/", "vine/", "amqp/"),
    "SMTP and email": ("smtplib", "django/core/mail/", "email/", "ssl.py"),
    "Django request handling": ("django/core/handlers/", "django/middleware/", "django/http/",
                                "django/urls/", "django/contrib/", "asgiref/", "whitenoise/",
                                "django_htmx/"),
    "websocket / ASGI server": ("daphne/", "twisted/", "autobahn/", "channels/", "txaio/"),
    "the app's own code": ("feedback/", "realtime/", "outbox/", "django_celery/"),
    "logging": ("logging/",),
    "event loop and threads": ("asyncio/", "selectors.py", "threading.py", "concurrent/"),
}  # fmt: skip
# The trunk samples run through (entry points, loops, thread and pool bootstraps, the
# middleware and decorators around every view): left out of the inclusive table, where each
# would repeat the share of what it wraps.
TRUNK = re.compile(
    r"<frozen runpy>|click/|celery/(__main__|bin/|bootsteps|worker/worker\.py|"
    r"concurrency/)|billiard/(process|popen_fork|pool|context)\.py|threading\.py|"
    r"concurrent/futures/|asyncio/(base_events|events)\.py|daphne/(cli|server|"
    r"__main__)\.py|twisted/internet/asyncioreactor\.py|twisted/python/(log|context)\.py|"
    r"asgiref/|Middleware(Mixin)?\.__call__|convert_exception_to_response|"
    r"django/views/decorators/"
)
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^():]*)(?::\d+)?\)$")


def frames(stack: str) -> list[tuple[str, str]]:
    """(function, file) from the root to the leaf; py-spy's "process ..." frames left out."""
    found = [FRAME.match(frame) for frame in stack.split(";") if not frame.startswith("process ")]
    return [(m["function"], m["file"]) for m in found if m]


def group(stack: list[tuple[str, str]]) -> str:
    if stack and WAITING.search("." + stack[-1][0]):
        return "waiting in a blocking call (select, lock, socket read)"
    for _, file in reversed(stack):
        for name, prefixes in GROUPS.items():
            if any(prefix in file for prefix in prefixes):
                return name
    return "other (Python, libraries)"


def summarize(raw: str, top: int = 15) -> dict:
    """From py-spy's collapsed stacks ("frame;frame;... count" a line): the sample count,
    the groups' shares, the ``top`` functions by inclusive share with their self share, and
    half as many by self share (``hot``): where the samples were at the top of the stack."""
    total, groups, inclusive, own = 0, Counter(), Counter(), Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        found, count = frames(stack), int(count)
        total += count
        groups[group(found)] += count
        for function in {f"{name} ({file})" for name, file in found}:  # once, even if recursive
            inclusive[function] += count
        if found:
            own["{} ({})".format(*found[-1])] += count
    share = lambda n: 100 * n / max(total, 1)  # noqa: E731
    return {
        "samples": total,
        "groups": [(name, share(n)) for name, n in groups.most_common()],
        "functions": [
            (name, share(n), share(own[name]))
            for name, n in inclusive.most_common()
            if not TRUNK.search(name)
        ][:top],
        "hot": [(name, share(inclusive[name]), share(n)) for name, n in own.most_common(top // 2)],
    }


def profile(directory: Path, size: str, sizes, command: str, machine: dict,
            configs: list[str]) -> int:  # fmt: skip
    """Each configuration in a process of its own (Django's settings load once per process),
    then docs/profile.md from what each wrote (``DIR/NAME.json``)."""
    from devtools.bench import report

    directory.mkdir(parents=True, exist_ok=True)
    for name in configs:
        child = [sys.executable, "-m", "devtools.bench", "--profile", str(directory),
                 "--profile-config", name, "--size", size]  # fmt: skip
        subprocess.run(child, cwd=REPO_ROOT, check=True)
    runs = [json.loads((directory / f"{name}.json").read_text()) for name in configs]
    out = REPO_ROOT / "docs" / "profile.md"
    out.write_text(report.render("profile.md", {"command": command, "machine": machine,
                                                "sizes": vars(sizes), "runs": runs}))  # fmt: skip
    print(f"bench: profiles in {directory}, summary in {out}", file=sys.stderr)
    return 0


def profile_config(directory: Path, sizes, name: str, config: tuple[str, str, str]) -> None:
    """py-spy on one configuration's daphne and worker node under the submit load at the
    first of ``rates``; writes ``DIR/NAME.json`` (and its flame graphs and stacks)."""
    from devtools.bench import scenarios
    from devtools.bench.stack import BenchStack

    database, app, _ = config
    tutorial, rate = name == "baseline", sizes.rates[0]
    py_spy = str(Path(sys.executable).parent / "py-spy")
    with BenchStack(database=database, app=app) as stack:
        url = stack.start_web(1)
        stack.start_workers(1)
        roles = {"daphne": stack.daphnes[0].pid, "worker": stack.workers[0].pid}
        scenarios.load("submit", url, rate=rate, seconds=sizes.warmup, watch=not tutorial,
                       tutorial=tutorial, sessions=sizes.sessions, tag="warm")  # fmt: skip
        # The summary's stacks at py-spy's 100 Hz, the flame graphs at 25 (two cores, four spies).
        spies = [subprocess.Popen([py_spy, "record", "--pid", str(pid), "--subprocesses",
                                   "--nonblocking", "--gil", "--format", form, "--rate", hz,
                                   "--output", str(directory / f"{name}-{role}.{suffix}")])
                 for role, pid in roles.items()
                 for form, hz, suffix in (("flamegraph", "25", "svg"), ("raw", "100", "txt"))
                 ]  # fmt: skip
        time.sleep(1)  # py-spy attached
        before, emails_before = stack.cpu(), len(stack.arrivals())
        result = scenarios.load("submit", url, rate=rate, seconds=sizes.seconds,
                                watch=not tutorial, tutorial=tutorial, sessions=sizes.sessions,
                                tag="prof")  # fmt: skip
        time.sleep(2)  # the last emails
        cpu = scenarios.cpu_delta(before, stack.cpu())
        emails = len(stack.arrivals()) - emails_before
        for spy in spies:
            spy.send_signal(2)  # SIGINT: py-spy writes its output
            spy.wait(60)
    answered = sum(1 for sample in result["samples"] if sample[2] in (200, 302))
    per_op = {"daphne": (answered, "answered submission"), "worker": (emails, "email sent")}
    processes = [
        {"role": role, "ms": 1000 * cpu[role] / max(per_op[role][0], 1), "per": per_op[role],
         **summarize((directory / f"{name}-{role}.txt").read_text())}
        for role in roles
    ]  # fmt: skip
    run = {"name": name, "rate": rate, "sent": len(result["samples"]), "answered": answered,
           "emails": emails, "processes": processes}  # fmt: skip
    (directory / f"{name}.json").write_text(json.dumps(run))
