"""py-spy on a running process during a bench phase (``--profile``), summarized for the report.

py-spy samples from outside (no code change in the app, little overhead with
``--nonblocking``). The raw output is folded stacks; the summary is the share
of samples per function: *self* (the function was on top) and *inclusive* (it
was anywhere on the stack), the latter for the app's own code.
"""

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
APP_PACKAGES = ("feedback/", "realtime/", "django_celery/")


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profiler:
    def __init__(self, pid: int, out: Path, *, subprocesses: bool = False, rate: int = 100):
        self.pid = pid
        self.out = Path(out)
        self.subprocesses = subprocesses
        self.rate = rate
        self.proc: subprocess.Popen | None = None
        self.error = ""

    def start(self) -> "Profiler":
        binary = py_spy()
        if binary is None:
            self.error = "py-spy is not installed (pip install -r requirements-test.txt)"
            return self
        argv = [binary, "record", "--pid", str(self.pid), "--format", "raw",
                "--output", str(self.out), "--rate", str(self.rate), "--nonblocking"]  # fmt: skip
        if self.subprocesses:
            argv.append("--subprocesses")
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        return self

    def stop(self, *, top: int = 12) -> dict:
        if self.proc is None:
            return {"error": self.error}
        self.proc.send_signal(signal.SIGINT)  # py-spy writes its output and exits
        try:
            _, stderr = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, stderr = self.proc.communicate()
        if not self.out.exists():
            return {"error": f"py-spy wrote nothing: {stderr.strip()[-500:]}"}
        return summarize(self.out.read_text(), top=top)


def _function(frame: str) -> str:
    """``name (path/to/file.py:123)`` → ``name (file path from the package root)``."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3.12/", str(REPO_ROOT) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})" if path else name


def summarize(folded: str, *, top: int = 12) -> dict:
    total = 0
    own: Counter = Counter()
    inclusive: Counter = Counter()
    for line in folded.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(frame) for frame in stack.split(";") if frame]
        # py-spy's first frame may be "process 123:..." / "thread ..." labels.
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for function in set(frames):
            inclusive[function] += count
    if not total:
        return {"samples": 0}
    app = [
        (f, n) for f, n in inclusive.most_common() if f.split(" (", 1)[-1].startswith(APP_PACKAGES)
    ]
    return {
        "samples": total,
        "self": [(f, n / total) for f, n in own.most_common(top)],
        "app_inclusive": [(f, n / total) for f, n in app[:top]],
    }
