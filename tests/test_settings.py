"""Production settings: refused without the required variables, `check --deploy` clean with them.

Settings are read once per process, so each case runs `manage.py` in a subprocess
with exactly the environment under test.
"""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# The production variables docs/deploying.md documents.
PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "DJANGO_ALLOWED_HOSTS": "feedback.example.com",
    "DJANGO_SECURE_HSTS_PRELOAD": "1",
}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "SECURE_")) or key == "DJANGO_SETTINGS_MODULE"
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "django_celery.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_deploy_reports_nothing_with_the_production_variables():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_does_complain_about_development_settings():
    # The test above could not fail if the check found nothing to check.
    result = manage("check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    assert "security.W018" in result.stderr  # DEBUG on


@pytest.mark.parametrize("missing", ["DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS"])
def test_production_refuses_to_start_without(missing):
    env = {key: value for key, value in PRODUCTION.items() if key != missing}
    result = manage("check", **env)
    assert result.returncode != 0
    assert f"{missing} must be set when DJANGO_DEBUG=0." in result.stderr


def test_production_refuses_any_host():
    result = manage("check", **{**PRODUCTION, "DJANGO_ALLOWED_HOSTS": "feedback.example.com,*"})
    assert result.returncode != 0
    assert "DJANGO_ALLOWED_HOSTS must name the hosts, not '*'" in result.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DJANGO_DEBUG", "ture"),
        ("REALTIME_WATCHES_PER_SOCKET", "50x"),
        ("FEEDBACK_SWEEP_INTERVAL", "five"),
    ],
)
def test_a_bad_value_stops_the_start_never_a_silent_default(variable, value):
    result = manage("check", **{variable: value})
    assert result.returncode != 0
    assert f'Environment variable "{variable}" invalid' in result.stderr


def test_timings_that_disagree_are_reported_by_the_system_checks():
    result = manage(
        "check", REALTIME_HEARTBEAT_SECONDS="0", WORKER_PRESENCE_TIMEOUT="12",
        FEEDBACK_TASK_TIME_LIMIT="0", FEEDBACK_RETRY_BACKOFF="600",
    )  # fmt: skip
    assert result.returncode != 0
    for check in ("web.E001", "web.E002", "feedback.E001", "feedback.E002"):
        assert check in result.stderr


def test_production_switches_on_https_and_secure_cookies():
    code = (
        "from django.conf import settings as s; "
        "print(s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, "
        "s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_REFERRER_POLICY, "
        "s.SESSION_COOKIE_NAME)"
    )
    result = manage("shell", "--no-imports", "-c", code, **PRODUCTION)
    assert result.stdout.split() == [
        "True", "31536000", "True", "True", "True", "same-origin",
        "__Host-sessionid",  # only this host, over HTTPS, can set it: no planted key
    ]  # fmt: skip
    # Each can be switched off by its variable, e.g. behind a proxy that redirects itself.
    result = manage(
        "shell", "--no-imports", "-c", code, **PRODUCTION, DJANGO_SECURE_SSL_REDIRECT="0"
    )
    assert result.stdout.split()[0] == "False"


def test_under_asgi_the_middleware_chain_changes_to_sync_once_at_its_innermost(settings, caplog):
    """Every middleware then runs in the request's thread, with no thread hop per hook
    (Django's MiddlewareMixin in async mode hops to a thread for each one)."""
    from django.core.handlers.asgi import ASGIHandler

    settings.DEBUG = True  # Django logs each adaptation only in debug
    with caplog.at_level("DEBUG", logger="django.request"):
        ASGIHandler().load_middleware(is_async=True)
    adapted = {r.getMessage() for r in caplog.records if "adapted" in r.getMessage()}
    assert adapted == {f"Asynchronous handler adapted for middleware {settings.MIDDLEWARE[-1]}."}
