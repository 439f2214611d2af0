"""The direction of imports, read from the source (ast), so no import is ever executed.

Tests import tooling and the app; tooling (devtools, the bench) imports the app's
public services; the app imports neither; `realtime` never imports `feedback`.
"""

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
APP_PACKAGES = ["django_celery", "feedback", "realtime", "outbox", "health"]


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (inside functions too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def offending_imports(packages: list[str], forbidden: set[str]) -> list[str]:
    found = []
    for package in packages:
        sources = sorted((REPO_ROOT / package).rglob("*.py"))
        assert sources, f"no Python source under {package}/"
        for path in sources:
            for module in sorted(imported_modules(path)):
                if module.partition(".")[0] in forbidden:
                    found.append(f"{path.relative_to(REPO_ROOT)} imports {module}")
    return found


def test_the_check_sees_every_form_of_import(tmp_path):
    source = tmp_path / "sample.py"
    source.write_text(
        "import devtools.ports\n"
        "from tests.support import layer\n"
        "from . import sibling\n"
        "def later():\n"
        "    import tests as t\n"
    )
    assert imported_modules(source) == {"devtools.ports", "tests.support", "tests"}


@pytest.mark.parametrize("package", APP_PACKAGES)
def test_the_app_imports_neither_tooling_nor_tests(package):
    assert offending_imports([package], {"devtools", "tests"}) == []


def test_tooling_never_imports_the_tests():
    assert offending_imports(["devtools"], {"tests"}) == []


def test_realtime_never_imports_feedback():
    assert offending_imports(["realtime"], {"feedback"}) == []
