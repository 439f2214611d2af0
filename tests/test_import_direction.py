"""The direction of imports: import-linter's contracts in pyproject.toml, run as CI runs them.

Tests import tooling and the app; tooling imports the app's public services; the
app imports neither; `realtime` never imports `feedback`; the domain never
imports the project's wiring; no package has an import circle.
"""

import subprocess
import sys
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
CONFIG = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def lint_imports(cwd: Path, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LINT_IMPORTS, *arguments], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_every_import_contract_is_kept():
    result = lint_imports(REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_contracts_cover_every_package_so_a_new_app_is_checked_too():
    packages = {path.parent.name for path in REPO_ROOT.glob("*/__init__.py")}
    assert set(CONFIG["root_packages"]) == packages
    tooling = {"devtools", "tests"}
    [app] = [c for c in CONFIG["contracts"] if set(c.get("forbidden_modules", ())) == tooling]
    assert set(app["source_modules"]) == packages - tooling


def test_an_import_inside_a_function_counts_too(tmp_path):
    """A lazy import (a task module imported inside a service) is an import all the same."""
    package = tmp_path / "sample"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "tasks.py").write_text("")
    (package / "services.py").write_text("def enqueue():\n    from . import tasks\n")
    config = tmp_path / "imports.toml"
    config.write_text(
        '[tool.importlinter]\nroot_packages = ["sample"]\n'
        '[[tool.importlinter.contracts]]\nname = "Lazy"\ntype = "forbidden"\n'
        'source_modules = ["sample.services"]\nforbidden_modules = ["sample.tasks"]\n'
    )
    result = lint_imports(tmp_path, str(config))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "sample.services -> sample.tasks" in result.stdout
