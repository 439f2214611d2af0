"""Watch tokens never reach a log: not Django's, not the access log (HAProxy's; daphne's is off)."""

import logging
import re
import time
import uuid

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from feedback.tokens import feedback_token
from web.log_redaction import REDACTED, RedactingFormatter, redact


def a_token() -> str:
    return feedback_token(uuid.uuid4(), session={})


def test_redact_hides_tokens_in_watch_paths_and_anywhere_else():
    token = a_token()
    assert redact(f"GET /feedback/{token}/ 200") == f"GET /feedback/{REDACTED}/ 200"
    assert redact(f"WSCONNECT /ws/feedback/{token}/") == f"WSCONNECT /ws/feedback/{REDACTED}/"
    assert redact("Not Found: /feedback/not-even-a-token/") == f"Not Found: /feedback/{REDACTED}/"
    download = "Not Found: /tasks/not-a-token/download"  # a live task's
    assert redact(download) == f"Not Found: /tasks/{REDACTED}/download"
    assert token not in redact(f"Referer: https://x.example/?t={token}&more")
    # Other paths and ordinary text are left alone.
    for line in ["GET / 200", "GET /static/css/app.css", "POST /admin/login/ 302", "a:b:c"]:
        assert redact(line) == line


def test_every_configured_handler_formats_through_the_redactor(settings):
    formatters = settings.LOGGING["formatters"]
    for handler in settings.LOGGING["handlers"].values():
        formatter = formatters[handler["formatter"]]
        assert formatter["()"] == "web.log_redaction.RedactingFormatter"
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


def test_file_paths_in_a_traceback_are_kept():
    token = a_token()
    for line in [
        'File "/srv/app/feedback/tasks.py", line 42, in send_feedback_email',
        'File "/srv/app/realtime/consumers.py", line 7',
        "/home/ada/checkout/feedback/templates/feedback/detail.html",
    ]:
        assert redact(line) == line
    try:
        raise RuntimeError(f"while serving /feedback/{token}/")
    except RuntimeError:
        record = logging.LogRecord("feedback", logging.ERROR, __file__, 1, "boom", (), None)
        record.exc_info = __import__("sys").exc_info()
    text = RedactingFormatter(fmt="%(message)s").format(record)
    assert f'{__file__}", line' in text  # this file's path, whole
    assert token not in text


@pytest.mark.django_db(transaction=True)
def test_no_token_in_haproxy_or_daphne_output_after_a_real_visit(start_daphne, start_haproxy):
    daphne = start_daphne()
    proxy = start_haproxy(web=[f"{daphne.host}:{daphne.port}"] * 2)  # the file names two
    origin = proxy.url
    with httpx.Client(base_url=proxy.url, timeout=20) as browser:
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
        assert browser.get(f"/tasks/{token}/download").status_code == 404  # a live task's
        cookie = "; ".join(f"{name}={value}" for name, value in browser.cookies.items())

    ws_path = f"{proxy.ws_url}/ws/feedback/{token}/"
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

    # HAProxy logs a request as it completes; wait for the refused socket's line.
    deadline = time.monotonic() + 10
    while " 403 " not in proxy.log_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    access = proxy.log_text()
    assert f'"GET /feedback/{REDACTED}/"' in access
    assert f'"GET /ws/feedback/{REDACTED}/"' in access
    assert f'"GET /tasks/{REDACTED}/download"' in access
    assert f"Not Found: /feedback/{REDACTED}/" in daphne.log_text()
    for log in (access, daphne.log_text()):
        assert token not in log
        assert token[:40] not in log  # not even a piece of it
