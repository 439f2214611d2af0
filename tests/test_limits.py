"""The submission rate limit: counted in the session's real Redis."""

import itertools
import re

import pytest
import redis
from django.test import Client, RequestFactory
from redis.connection import AbstractConnection

from feedback.limits import rate_parse, submission_limit_take
from feedback.models import Feedback

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
DATA = {"email": "ada@example.com", "message": "Hello there"}
_addresses = (f"10.44.{n // 250}.{n % 250 + 1}" for n in itertools.count())


def forget_the_counters(redis_url: str, prefix: str) -> None:
    """Delete this stack's rate-limit counters: with TEST_REDIS_URL, the Redis (and the
    counters of these same addresses) outlives a run."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*rl:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def limit(settings, redis_url):
    # Hourly windows: a minute window could roll over mid-test and let one more through.
    settings.FEEDBACK_RATE_LIMIT = "3/h"
    settings.FEEDBACK_SEND_DELAY = 0
    forget_the_counters(redis_url, settings.REDIS_PREFIX)


@pytest.fixture
def browser() -> Client:
    """A client with an address of its own, so no other test's count reaches it."""
    return Client(REMOTE_ADDR=next(_addresses))


def test_over_the_limit_htmx_gets_its_form_back_with_429_and_nothing_is_stored(limit, browser):
    for _ in range(3):
        assert browser.post("/", DATA, headers=HTMX).status_code == 200
    response = browser.post("/", {**DATA, "message": "One too many"}, headers=HTMX)
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 3600
    html = response.content.decode()
    assert html.lstrip().startswith('<form id="feedback-form"')  # swapped in place of the form
    assert "sent several messages in a short time" in html
    assert "One too many" in html  # the text is kept
    assert Feedback.objects.count() == 3


def test_over_the_limit_a_plain_post_gets_the_429_page(limit, browser):
    for _ in range(3):
        assert browser.post("/", DATA).status_code == 303
    response = browser.post("/", DATA)
    assert response.status_code == 429
    html = response.content.decode()
    assert "Thanks, that is plenty for now" in html and "/static/css/app.css" in html
    assert Feedback.objects.count() == 3


def test_the_limit_is_per_client(limit, browser):
    for _ in range(3):
        browser.post("/", DATA, headers=HTMX)
    assert browser.post("/", DATA, headers=HTMX).status_code == 429
    assert Client(REMOTE_ADDR=next(_addresses)).post("/", DATA, headers=HTMX).status_code == 200


def test_form_errors_do_not_count(limit, browser):
    for _ in range(5):
        response = browser.post("/", {"email": "nope", "message": ""}, headers=HTMX)
        assert (
            response.status_code == 200
            and "Enter a valid email address." in response.content.decode()
        )
    for _ in range(3):
        assert browser.post("/", DATA, headers=HTMX).status_code == 200


def test_the_old_way_counts_too(limit, browser):
    for mode in ["sync", "async", "sync"]:
        assert browser.post("/", {**DATA, "mode": mode}, headers=HTMX).status_code == 200
    assert browser.post("/", {**DATA, "mode": "sync"}, headers=HTMX).status_code == 429


def test_the_limit_is_a_setting(settings, browser):
    settings.FEEDBACK_RATE_LIMIT = "1/h"
    assert browser.post("/", DATA, headers=HTMX).status_code == 200
    assert browser.post("/", DATA, headers=HTMX).status_code == 429
    settings.FEEDBACK_RATE_LIMIT = None  # "off"
    assert browser.post("/", DATA, headers=HTMX).status_code == 200


def test_with_redis_down_the_limit_lets_the_submission_through(
    limit, browser, redis_server, caplog
):
    redis_server.stop()
    response = browser.post("/", DATA, headers=HTMX)
    assert response.status_code == 200
    assert re.search(r'data-status="queued"', response.content.decode())
    assert Feedback.objects.count() == 1
    assert "Submission limit not checked: the cache is unreachable" in caplog.text


def test_one_round_trip_to_redis_per_counted_submission_and_the_counter_ends_with_its_window(
    limit, settings, redis_url, monkeypatch
):
    """Counted in one atomic script (INCR, EXPIRE when new): a counter never lives without
    its expiry, so it ends with its window."""
    submission_limit_take(RequestFactory().post("/", REMOTE_ADDR=next(_addresses)))  # warm
    request = RequestFactory().post("/", REMOTE_ADDR=next(_addresses))
    trips: list[bytes] = []
    send = AbstractConnection.send_packed_command

    def counted(self, command, *args, **kwargs):
        trips.append(command)
        return send(self, command, *args, **kwargs)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    taken = [submission_limit_take(request).exceeded for _ in range(3)]
    monkeypatch.undo()
    assert taken == [False, False, False]
    assert len(trips) == 3
    over = submission_limit_take(request)
    assert over.exceeded and 1 <= over.retry_after <= 3600

    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        counts = {
            int(client.get(key)): client.ttl(key)
            for key in client.scan_iter(match=f"{settings.REDIS_PREFIX}:*rl:*", count=1000)
        }
        assert sorted(counts) == [1, 4]  # the warm-up's client, and this one
        assert 0 < counts[4] <= 3600
    finally:
        client.close()


def test_a_rate_is_a_count_per_period():
    for rate, count, seconds in [("5/m", 5, 60), ("100/h", 100, 3600), ("10/30s", 10, 30)]:
        item = rate_parse(rate)
        assert (item.amount, item.get_expiry()) == (count, seconds)
    assert rate_parse("2/d").get_expiry() == 86400
