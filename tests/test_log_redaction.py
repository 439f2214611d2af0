"""Watch tokens never reach a log: not Django's, not daphne's access log."""

import logging
import re
import time
import uuid

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from django_celery.log_redaction import REDACTED, RedactingFormatter, redact
from feedback.tokens import feedback_token


def a_token() -> str:
    return feedback_token(uuid.uuid4(), session={})


def test_redact_hides_tokens_in_watch_paths_and_anywhere_else():
    token = a_token()
    assert redact(f"GET /feedback/{token}/ 200") == f"GET /feedback/{REDACTED}/ 200"
    assert redact(f"WSCONNECT /ws/feedback/{token}/") == f"WSCONNECT /ws/feedback/{REDACTED}/"
    assert redact("Not Found: /feedback/not-even-a-token/") == f"Not Found: /feedback/{REDACTED}/"
    assert token not in redact(f"Referer: https://x.example/?t={token}&more")
    # Other paths and ordinary text are left alone.
    for line in ["GET / 200", "GET /static/css/app.css", "POST /admin/login/ 302", "a:b:c"]:
        assert redact(line) == line


def test_every_configured_handler_formats_through_the_redactor(settings):
    formatters = settings.LOGGING["formatters"]
    for handler in settings.LOGGING["handlers"].values():
        formatter = formatters[handler["formatter"]]
        assert formatter["()"] == "django_celery.log_redaction.RedactingFormatter"
    token = a_token()
    record = logging.LogRecord(
        "django.request",
        logging.WARNING,
        __file__,
        1,
        "Not Found: %s",
        (f"/feedback/{token}/",),
        None,
    )
    assert RedactingFormatter(fmt=formatter["fmt"]).format(record) == (
        f"WARNING django.request: Not Found: /feedback/{REDACTED}/"
    )


@pytest.mark.django_db(transaction=True)
def test_no_token_in_daphne_output_after_a_real_visit(start_daphne):
    daphne = start_daphne()
    origin = daphne.url
    with httpx.Client(base_url=daphne.url, timeout=20) as browser:
        page = browser.get("/")
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        posted = browser.post(
            "/", data={"email": "ada@example.com", "message": "Hi", "csrfmiddlewaretoken": csrf}
        )
        assert posted.status_code == 303
        status_path = posted.headers["location"]
        token = status_path.split("/")[2]
        assert browser.get(status_path).status_code == 200
        assert (
            browser.get(f"/feedback/{token}x/").status_code == 404
        )  # Django logs "Not Found: <path>"
        cookie = "; ".join(f"{name}={value}" for name, value in browser.cookies.items())

    ws_path = f"{daphne.ws_url}/ws/feedback/{token}/"
    with connect(
        ws_path, origin=origin, additional_headers={"Cookie": cookie}, open_timeout=20
    ) as ws:
        assert 'data-status="' in ws.recv(timeout=20)
    with pytest.raises(InvalidStatus) as refused:
        connect(
            ws_path,
            origin="http://evil.example",
            additional_headers={"Cookie": cookie},
            open_timeout=20,
        )
    assert refused.value.response.status_code == 403

    # The access log is written as requests complete; wait for the last lines.
    deadline = time.monotonic() + 10
    while "WSREJECT" not in daphne.log_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = daphne.log_text()
    assert f"GET /feedback/{REDACTED}/" in log
    assert f"WSCONNECT /ws/feedback/{REDACTED}/" in log
    assert f"Not Found: /feedback/{REDACTED}/" in log
    assert token not in log
    assert token[:40] not in log  # not even a piece of it
