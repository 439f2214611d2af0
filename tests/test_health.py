"""/healthz: the database, Redis and a worker, each asked with a short timeout."""

import time

import httpx
import pytest

from health.checks import health_report_forget

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fresh_report():
    """Each test asks anew: a report cached by the previous test would answer for it."""
    health_report_forget()
    yield
    health_report_forget()


def test_all_ok_with_a_worker_up(client, start_worker):
    start_worker()
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"]
    assert response.json() == {
        "status": "ok",
        "checks": {
            "database": {"ok": True},
            "redis": {"ok": True},
            "worker": {"ok": True, "workers": 1},
        },
    }


def test_503_when_no_worker_answers(client, start_worker):
    worker = start_worker()
    worker.stop()
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["checks"]["worker"]["ok"] is False
    assert "no worker answered" in body["checks"]["worker"]["detail"]
    assert body["checks"]["database"] == {"ok": True}
    assert body["checks"]["redis"] == {"ok": True}


def test_503_when_redis_is_down_and_the_worker_is_not_asked(client, redis_server):
    redis_server.stop()
    try:
        response = client.get("/healthz")
    finally:
        redis_server.start()
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["redis"] == {"ok": False, "detail": "Redis does not answer"}
    assert checks["worker"]["ok"] is False
    assert "Redis" in checks["worker"]["detail"]
    assert checks["database"] == {"ok": True}


def test_healthz_served_by_daphne_follows_the_worker(start_daphne, start_worker):
    server = start_daphne()
    worker = start_worker()
    assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
    worker.stop()
    # The report may be up to HEALTH_CACHE_SECONDS old.
    deadline = time.monotonic() + 10
    while (response := httpx.get(f"{server.url}/healthz", timeout=10)).status_code == 200:
        assert time.monotonic() < deadline, "/healthz still says ok 10 s after the worker stopped"
        time.sleep(0.2)
    assert response.status_code == 503
    assert response.json()["checks"]["worker"]["ok"] is False


def test_healthz_answers_plain_http_in_production(start_daphne, start_worker):
    """Probes ask over plain HTTP from inside: no redirect to HTTPS for /healthz."""
    production = {
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "a-test-secret-that-is-long-enough-for-production-checks",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
    }
    # The worker too: the nodes of one deployment share their settings (REDIS_PREFIX with them).
    start_worker(**production)
    server = start_daphne(**production)
    response = httpx.get(f"{server.url}/healthz", timeout=10)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    # Everything else still goes to HTTPS.
    assert httpx.get(f"{server.url}/", timeout=10).status_code == 301
