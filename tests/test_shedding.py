"""Overload is shed, never a 500 (web/shedding.py): a busy database answers 503 with
Retry-After, the form comes back with the person's text and "Busy, try again in N s", one
warning line and no traceback per shed request, and nothing is stored.

The database is made busy for real: another connection holds SQLite's write lock
(tests/support/holds.py) for longer than the busy timeout.
"""

import asyncio
import logging
import os
import re
from collections import Counter
from http import HTTPStatus

import httpx
import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.http import HttpResponse
from django.test import RequestFactory
from playwright.sync_api import expect

from devtools.processes import wait_until
from feedback.models import Feedback
from tests.support.holds import DatabaseHold
from web.shedding import RETRY_AFTER, SheddingSessionMiddleware

# The web's busy timeout: a held lock sheds after half a second.
BUSY = {"DATABASE_BUSY_TIMEOUT": "0.5", "FEEDBACK_RATE_LIMIT": "off"}
HINT = {
    "en": f"Busy, try again in {RETRY_AFTER} s.",
    "pt-br": f"Ocupado, tente de novo em {RETRY_AFTER} s.",
}
SHED_LINE = re.compile(r"Shed POST / \(503\): database busy: database is locked")


def csrf_token(client: httpx.Client) -> str:
    page = client.get("/")
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)


@pytest.mark.parametrize("language", ["en", "pt-br"])
def test_a_locked_database_sheds_a_submission_with_503_and_its_form_filled(start_daphne, language):
    web = start_daphne(**BUSY)
    headers = {"Accept-Language": language}
    with httpx.Client(base_url=web.url, timeout=30, headers=headers) as client:
        token = csrf_token(client)
        form = {
            "email": "ada@example.com",
            "message": "Kept as typed",
            "csrfmiddlewaretoken": token,
        }
        with DatabaseHold() as hold:
            hold.take()
            htmx = client.post("/", data=form, headers={"HX-Request": "true"})
            plain = client.post("/", data=form)
    for response in (htmx, plain):
        assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
        assert response.headers["Retry-After"] == str(RETRY_AFTER)
        assert HINT[language] in response.text
        assert "Kept as typed</textarea>" in response.text
        assert 'value="ada@example.com"' in response.text
    assert "<html" not in htmx.text  # the form partial, swapped in place
    assert "<html" in plain.text  # no JavaScript: the whole page, the form filled
    assert Feedback.objects.count() == 0
    log = web.log_text()
    assert len(SHED_LINE.findall(log)) == 2
    assert "Traceback" not in log
    assert "django.request" not in log  # one line per shed request: ours


@pytest.mark.parametrize(
    ("answered", "expected", "line"),
    [
        # The view's work is done (a stored feedback): a 503 would have it sent twice.
        (HTTPStatus.OK, HTTPStatus.OK, "Session of POST /somewhere not saved (200 kept)"),
        # Nothing was done: shed like a view the database refused.
        (HTTPStatus.BAD_REQUEST, HTTPStatus.SERVICE_UNAVAILABLE, "Shed POST /somewhere (503)"),
    ],
)
def test_a_session_save_refused_by_a_locked_database_never_answers_500(
    transactional_db, caplog, answered, expected, line
):
    """The session is saved after the view, in the session middleware, where Django would
    turn the error into a 500: one warning line, no traceback, and never a 500."""
    request = RequestFactory().post("/somewhere")
    request.session = SessionStore()
    request.session.create()  # saved: its save is an UPDATE, refused as SessionInterrupted
    request.session["seen"] = True
    middleware = SheddingSessionMiddleware(lambda request: HttpResponse())
    caplog.set_level(logging.WARNING)
    with DatabaseHold() as hold:
        hold.take()
        response = middleware.process_response(request, HttpResponse(status=answered))
    assert response.status_code == expected
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [f"{line}: database busy: database is locked"]
    assert not any(r.exc_info for r in caplog.records)
    if expected == HTTPStatus.SERVICE_UNAVAILABLE:
        assert response["Retry-After"] == str(RETRY_AFTER)


# -- A burst on the default stack ------------------------------------------------------

# Submissions per second (open loop) and for how long (BURST_RATE=50 BURST_SECONDS=30: 50/s).
RATE = int(os.environ.get("BURST_RATE", "100"))
SECONDS = int(os.environ.get("BURST_SECONDS", "10"))


async def burst(url: str, token: str) -> list[tuple[str, int | str]]:
    """RATE submissions a second for SECONDS, each from a new visitor (no session cookie),
    sent on schedule whatever the answers; (address, status or the error's name) each."""
    transport = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=RATE * SECONDS))
    answers: list[tuple[str, int | str]] = []

    async def submit(number: int) -> None:
        address = f"b{number}@example.com"
        visitor = httpx.AsyncClient(base_url=url, transport=transport, timeout=60)
        visitor.cookies.set("csrftoken", token)
        form = {"email": address, "message": f"Burst {number}", "csrfmiddlewaretoken": token}
        try:
            response = await visitor.post("/", data=form, headers={"HX-Request": "true"})
            answers.append((address, response.status_code))
        except httpx.HTTPError as error:
            answers.append((address, type(error).__name__))

    loop = asyncio.get_running_loop()
    started = loop.time()
    sending = []
    for number in range(RATE * SECONDS):
        await asyncio.sleep(max(0.0, started + number / RATE - loop.time()))
        sending.append(asyncio.create_task(submit(number)))
    await asyncio.gather(*sending)
    await transport.aclose()
    return answers


@pytest.mark.timeout(420)
def test_a_burst_of_100_a_second_for_10_s_answers_2xx_or_503_and_emails_each_once(
    start_worker, start_daphne, smtp_server
):
    env = {"FEEDBACK_RATE_LIMIT": "off", "FEEDBACK_UNDO_SECONDS": "0", "FEEDBACK_SEND_DELAY": "0"}
    worker = start_worker(purge=True, concurrency=2, **env)
    web = start_daphne(**env)
    with httpx.Client(base_url=web.url, timeout=30) as client:
        token = csrf_token(client)
    answers = asyncio.run(burst(web.url, token))

    codes = Counter(status for _, status in answers)
    print(f"\nburst {RATE}/s for {SECONDS} s: answers {dict(sorted(codes.items(), key=str))}")
    assert len(answers) == RATE * SECONDS
    taken = {address for address, status in answers if status in (200, 201, 204)}
    shed = {address for address, status in answers if status == HTTPStatus.SERVICE_UNAVAILABLE}
    assert len(taken) + len(shed) == len(answers), codes  # nothing else: no 5xx, no timeout
    assert Feedback.objects.count() == len(taken)  # a shed submission stored nothing

    def emailed() -> Counter:
        return Counter(str(m.message["To"]) for m in smtp_server.messages)

    wait_until(lambda: taken <= set(emailed()), 300, "every taken submission emailed")
    sent = emailed()
    duplicates = {address: count for address, count in sent.items() if count > 1}
    locked = [process.log_text().count("database is locked") for process in (web, worker)]
    print(
        f"emails {sum(sent.values())} for {len(taken)} taken; duplicates {len(duplicates)}; "
        f"'database is locked' in the web's log {locked[0]}, the worker's {locked[1]}"
    )
    assert duplicates == {}
    assert set(sent) == taken


# -- What a person sees -------------------------------------------------------------------

ENGLISH = {"locale": "en-US", "timezone_id": "UTC"}
PORTUGUESE = {"locale": "pt-BR", "timezone_id": "America/Sao_Paulo"}
WORDS = {
    "en-US": ("Your email address", "Message", "With Celery", HINT["en"]),
    "pt-BR": ("Seu endereço de e-mail", "Mensagem", "Com Celery", HINT["pt-br"]),
}


@pytest.mark.parametrize(
    "browser_context_options",
    [
        ENGLISH,
        PORTUGUESE,
        {**ENGLISH, "java_script_enabled": False},
        {**PORTUGUESE, "java_script_enabled": False},
    ],
    ids=["en", "pt-BR", "en-no-js", "pt-BR-no-js"],
)
def test_a_503_keeps_the_typed_message_and_shows_the_retry_hint(
    browser_page, start_daphne, browser_context_options
):
    email_label, message_label, button, hint = WORDS[browser_context_options["locale"]]
    web = start_daphne(**BUSY)
    page = browser_page
    page.goto(web.url)
    typed = "Kept while the server is busy.\nSecond line."
    page.get_by_label(email_label).fill("ada@example.com")
    page.get_by_label(message_label).fill(typed)
    with DatabaseHold() as hold:
        hold.take()
        with page.expect_response(lambda response: response.request.method == "POST") as answer:
            page.get_by_role("button", name=re.compile(button)).click()
        assert answer.value.status == HTTPStatus.SERVICE_UNAVAILABLE
        expect(page.locator("#feedback-form")).to_contain_text(hint)
    expect(page.get_by_label(message_label)).to_have_value(typed)
    expect(page.get_by_label(email_label)).to_have_value("ada@example.com")
    assert Feedback.objects.count() == 0
