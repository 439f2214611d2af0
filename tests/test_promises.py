"""README promises that had no test: timeouts that agree, response headers,
the body limit at its boundary, a websocket without Origin against a real
daphne, EMAIL_TIMEOUT read from the environment, one Message-ID per feedback.
"""

import socket
import time
from http.cookies import SimpleCookie

import pytest
from django.core.checks import run_checks
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from devtools.http_client import Visitor, watch_token
from feedback import delivery, services
from feedback.models import Feedback

# -- The timeouts agree (a system check) -----------------------------------------


def check_ids() -> set[str]:
    # No database here: the checks that need one (a JSONField's support) are left out.
    checked = run_checks(databases=[])
    return {message.id for message in checked if message.id.startswith("feedback.")}


def test_the_settings_as_shipped_pass_the_timeouts_check():
    assert check_ids() == set()


@pytest.mark.parametrize(
    "overrides, error",
    [
        ({"CELERY_TASK_TIME_LIMIT": 0}, "feedback.E001"),
        ({"CELERY_TASK_TIME_LIMIT": -1}, "feedback.E001"),
        ({"FEEDBACK_RETRY_BACKOFF": 600}, "feedback.E002"),
        ({"FEEDBACK_RETRY_BACKOFF": 0}, "feedback.E002"),
    ],
    ids=["no-time-limit", "negative-time-limit", "backoff-above-its-max", "no-backoff"],
)  # fmt: skip
def test_timeouts_that_do_not_agree_are_a_system_check_error(settings, overrides, error):
    for name, value in overrides.items():
        setattr(settings, name, value)
    assert error in check_ids()


# -- Response headers ------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/", "/healthz", "/no-such-page/"])
def test_every_response_carries_the_security_headers(client, path):
    response = client.get(path)
    csp = {
        directive.split()[0]: directive.split()[1:]
        for directive in response.headers["Content-Security-Policy"].split(";")
        if directive.strip()
    }
    assert csp["connect-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in csp["script-src"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"


# -- The 64 KiB body limit at its boundary ---------------------------------------------

LIMIT = 64 * 1024


def body_of(size: int) -> bytes:
    head = b"email=ada%40example.com&message="
    return head + b"x" * (size - len(head))


@pytest.mark.django_db
def test_a_body_of_exactly_64_kib_is_read_and_one_byte_more_is_413(client):
    at_limit = client.generic(
        "POST", "/", body_of(LIMIT), content_type="application/x-www-form-urlencoded"
    )
    assert at_limit.status_code not in (400, 413) and at_limit.status_code < 500
    over = client.generic(
        "POST", "/", body_of(LIMIT + 1), content_type="application/x-www-form-urlencoded"
    )
    assert over.status_code == 413
    assert Feedback.objects.count() == 0  # the message is over the form's length limit anyway


# -- A websocket without Origin, against a real daphne ---------------------------------


def test_a_websocket_without_origin_is_refused_by_a_real_daphne(start_daphne):
    server = start_daphne()
    with Visitor(server.url) as visitor:
        token = watch_token(visitor.submit(email="ada@example.com", message="Hi").text)
        cookie = SimpleCookie()
        for name, value in visitor.http.cookies.items():
            cookie[name] = value
        headers = {"Cookie": cookie.output(header="", sep=";").strip()}
        url = f"{server.ws_url}/ws/feedback/{token}/"
        with pytest.raises(InvalidStatus) as refused:
            connect(url, origin=None, additional_headers=headers, open_timeout=10)
        assert refused.value.response.status_code == 403
        # The same socket with the page's Origin is accepted: the Origin is what was refused.
        with connect(url, origin=server.url, additional_headers=headers, open_timeout=10) as ws:
            assert 'data-status="queued"' in ws.recv(timeout=10)


# -- EMAIL_TIMEOUT from the environment, in a real worker ------------------------------


def test_email_timeout_from_the_environment_bounds_a_hung_mail_server(start_worker):
    """A mail server that accepts and never speaks: with EMAIL_TIMEOUT=1 the
    attempt fails in about a second (the default, 10 s, would still be waiting)."""
    with socket.create_server(("127.0.0.1", 0), backlog=8) as silent:
        start_worker(
            purge=True,
            EMAIL_PORT=str(silent.getsockname()[1]),
            EMAIL_TIMEOUT="1",
            FEEDBACK_SEND_DELAY="0",
            FEEDBACK_MAX_ATTEMPTS="1",
        )
        feedback = services.feedback_create(email="ada@example.com", message="Hi")
        started = time.monotonic()
        deadline = started + 30
        while Feedback.objects.values_list("status", flat=True).get(pk=feedback.pk) != "failed":
            assert time.monotonic() < deadline, "not failed within 30 s"
            time.sleep(0.05)
        took = time.monotonic() - started
    assert took < 7, f"the hung attempt took {took:.1f} s"
    feedback.refresh_from_db()
    assert "(gave up after 1 attempt)" in feedback.failure_text


# -- One Message-ID on every attempt ---------------------------------------------------


def test_every_attempt_of_one_feedback_carries_the_same_message_id(start_worker, smtp_server):
    smtp_server.fail_next(1, code=451, text="Try again", stage="DATA")
    start_worker(
        purge=True, FEEDBACK_SEND_DELAY="0", FEEDBACK_RETRY_BACKOFF="0.5",
        FEEDBACK_RETRY_BACKOFF_MAX="1",
    )  # fmt: skip
    feedback = services.feedback_create(email="ada@example.com", message="Hi")
    [accepted] = smtp_server.wait_for(1, timeout=30)
    [refused] = smtp_server.refusals
    assert refused.message_id == accepted.message["Message-ID"]
    assert accepted.message["Message-ID"] == f"<feedback-{feedback.pk}@localhost>"


# -- Behind a proxy: --proxy-headers, X-Forwarded-For as the rate limit's key -----------


def submit_from(web_url: str, client_address: str) -> int:
    with Visitor(web_url) as visitor:
        visitor.http.headers["X-Forwarded-For"] = client_address
        return visitor.submit(email="ada@example.com", message="Hi").status_code


def test_behind_a_proxy_the_rate_limit_counts_per_forwarded_client(start_daphne):
    web = start_daphne(extra_args=("--proxy-headers",), FEEDBACK_RATE_LIMIT="1/m")
    assert submit_from(web.url, "203.0.113.7") == 200
    assert submit_from(web.url, "203.0.113.7") == 429  # the same client, over its limit
    assert submit_from(web.url, "198.51.100.4") == 200  # another client behind the same proxy
    assert Feedback.objects.count() == 2


# -- 535: the mail server refuses our credentials ----------------------------------------


@pytest.mark.django_db
def test_a_535_for_our_credentials_fails_at_once_with_a_plain_reason(settings):
    from aiosmtpd.smtp import AuthResult

    from devtools.smtp_sink import SmtpSink

    tried = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        tried.append(mechanism)
        return AuthResult(success=False, handled=False)  # aiosmtpd answers 535

    controller = SmtpSink(authenticator=authenticator, auth_require_tls=False)
    port = controller.port
    controller.start()
    try:
        settings.MAILERS = {
            "default": {
                "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
                "OPTIONS": {
                    "host": "127.0.0.1", "port": port, "timeout": 5,
                    "username": "feedback", "password": "wrong",
                },
            }
        }  # fmt: skip
        settings.FEEDBACK_SEND_DELAY = 0
        feedback = services.feedback_create(email="ada@example.com", message="Hi", enqueue=False)
        result = delivery.feedback_deliver_in_request(feedback_id=feedback.pk)
    finally:
        controller.stop()
    assert tried  # the credentials were offered, and refused
    assert result.status == "failed"
    # A plain reason with the server's own answer (code and text), not a traceback.
    assert result.failure_text.startswith("The mail server did not accept our credentials")
    assert "535" in result.failure_text
    assert "Traceback" not in result.failure_text
