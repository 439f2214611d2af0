"""`make admin` (devtools/admin_login.py): a development login for the admin."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
LOGIN = re.compile(r"Log in at (\S+) as (\S+) with the password: (\S+)$", re.M)

pytestmark = pytest.mark.django_db(transaction=True)


def admin_login(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "devtools.admin_login", *args],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def login_from(result: subprocess.CompletedProcess) -> tuple[str, str, str]:
    """(admin URL, username, password) as printed."""
    assert result.returncode == 0, result.stderr
    match = LOGIN.search(result.stdout)
    assert match, result.stdout
    return match.group(1), match.group(2), match.group(3)


def test_creates_a_superuser_then_gives_it_a_new_password(app_env, django_user_model):
    first = admin_login({**app_env, "PORT": "8123"})
    assert "Created the superuser 'admin'." in first.stdout
    url, username, password = login_from(first)
    assert (url, username) == ("http://127.0.0.1:8123/admin/", "admin")
    user = django_user_model.objects.get(username="admin")
    assert user.is_superuser and user.is_staff and user.is_active
    assert user.check_password(password)
    assert len(password) >= 16

    second = admin_login(app_env)
    assert "Gave a new password to the superuser 'admin'." in second.stdout
    _, _, new_password = login_from(second)
    user.refresh_from_db()
    assert new_password != password
    assert user.check_password(new_password) and not user.check_password(password)
    assert django_user_model.objects.count() == 1


def test_refuses_in_production(app_env, django_user_model):
    production = {
        **app_env,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "x" * 50,
        "DJANGO_ALLOWED_HOSTS": "feedback.example.com",
    }
    result = admin_login(production)
    assert result.returncode == 2
    assert "python manage.py createsuperuser" in result.stderr
    assert "password" not in result.stdout
    assert not django_user_model.objects.exists()


def test_make_admin_is_documented():
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert re.search(r"^admin: venv\n(\t.*\n)*\t\$\(VENV_PYTHON\) -m devtools.admin_login$",
                     makefile, re.M)  # fmt: skip
    quick_start = (REPO_ROOT / "README.md").read_text().split("## Quick start")[1].split("\n## ")[0]
    assert "make admin" in quick_start
