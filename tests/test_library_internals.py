"""The README's grep for library internals finds nothing: the promise and its check are one text."""

import re
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def readme_grep() -> str:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"```sh\n(grep -rnE .*?)```", readme, flags=re.S)
    assert found, "README.md's Tests section gives the grep for library internals"
    return found.group(1)


def run(command: str, cwd: Path) -> str:
    done = subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True)
    assert done.returncode in (0, 1), done.stderr  # grep: 1 is "nothing found"
    return done.stdout


def test_the_readme_grep_finds_no_library_internals():
    assert run(readme_grep(), REPO_ROOT) == ""


def test_the_grep_sees_a_private_name_and_an_override(tmp_path):
    """Without this, a grep broken by a typo would pass the test above for ever."""
    for package in (
        "django_celery",
        "feedback",
        "livetasks",
        "realtime",
        "health",
        "outbox",
        "web",
        "workers",
    ):
        (tmp_path / package).mkdir()
    (tmp_path / "devtools").mkdir()
    (tmp_path / "feedback" / "a.py").write_text("rows = queryset._update(fields)\n")
    override = "class B(Backend):\n    def _send(self, m):\n        pass\n"
    (tmp_path / "web" / "b.py").write_text(override)
    (tmp_path / "realtime" / "c.py").write_text("from daphne.server import _private\n")
    (tmp_path / "workers" / "d.py").write_text("self._own = 1\nname = Model._meta.label\n")
    found = run(readme_grep(), tmp_path)
    assert "feedback/a.py" in found and "web/b.py" in found and "realtime/c.py" in found
    assert "workers/d.py" not in found
