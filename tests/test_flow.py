"""The whole flow with real processes: Redis, a Celery worker, daphne, an SMTP server."""

import time

import pytest

from devtools.http_client import Visitor, status_of, statuses_until_final, watch_token
from feedback.models import Feedback

# The flow with a real worker: also runs on PostgreSQL (make test).
pytestmark = pytest.mark.engines


@pytest.fixture
def stack(start_worker, start_daphne):
    start_worker()
    return start_daphne()


def test_submit_then_the_email_arrives_and_the_socket_says_sent(stack, smtp_server):
    with Visitor(stack.url) as visitor:
        response = visitor.submit(email="ada@example.com", message="Hello from the test")
        assert response.status_code == 200
        assert status_of(response.text) == "queued"
        token = watch_token(response.text)

        with visitor.watch(token) as ws:
            seen = statuses_until_final(ws)

    [received] = smtp_server.wait_for(1, timeout=30)
    assert received.rcpt_tos == ["ada@example.com"]
    assert "> Hello from the test" in received.body
    assert seen[-1] == "sent"
    # The worker reports progress while sending (it may have started before we watched).
    assert set(seen) <= {"queued", "sending", "sent"}
    feedback = Feedback.objects.get()
    assert feedback.status == Feedback.Status.SENT
    assert feedback.attempts == 1


def test_a_watcher_connecting_after_the_send_still_sees_sent(stack, smtp_server):
    with Visitor(stack.url) as visitor:
        response = visitor.submit(email="late@example.com", message="Hi")
        token = watch_token(response.text)
        smtp_server.wait_for(1, timeout=30)
        for _ in range(100):  # the row is marked sent just after SMTP accepted the mail
            if Feedback.objects.get().status == Feedback.Status.SENT:
                break
            time.sleep(0.1)
        with visitor.watch(token) as ws:
            assert statuses_until_final(ws) == ["sent"]


def test_a_plain_post_without_javascript_redirects_to_a_status_page_that_ends_sent(
    stack, smtp_server
):
    with Visitor(stack.url) as visitor:
        response = visitor.submit(email="nojs@example.com", message="Hi", htmx=False)
        assert response.status_code == 303
        status_url = response.headers["location"]
        smtp_server.wait_for(1, timeout=30)
        for _ in range(100):
            page = visitor.http.get(status_url)
            if status_of(page.text) == "sent":
                break
            assert 'http-equiv="refresh"' in page.text  # keeps refreshing until final
            time.sleep(0.1)
        assert status_of(page.text) == "sent"
        assert 'http-equiv="refresh"' not in page.text


def test_a_submission_in_portuguese_gets_its_email_and_its_pushes_in_portuguese(
    start_worker, start_daphne, smtp_server
):
    """The worker has no request and runs in English (LANGUAGE_CODE); the feedback's
    language decides its email, the page's (its socket's handshake) every status pushed."""
    start_worker(FEEDBACK_UNDO_SECONDS=0, FEEDBACK_SEND_DELAY=1)
    stack = start_daphne(FEEDBACK_UNDO_SECONDS=0, FEEDBACK_SEND_DELAY=1)
    with Visitor(stack.url) as visitor:
        visitor.http.headers["Accept-Language"] = "pt-BR,pt;q=0.9,en;q=0.5"
        response = visitor.submit(email="ana@example.com", message="Olá do teste")
        assert "Na fila" in response.text and 'lang="pt-br"' not in response.text  # a fragment
        with visitor.watch(watch_token(response.text)) as ws:
            frames = frames_until_final(ws)

    [received] = smtp_server.wait_for(1, timeout=30)
    assert received.subject == "Obrigado pelo seu feedback"
    assert received.body.startswith("Olá,") and "> Olá do teste" in received.body
    assert "A equipe de feedback" in received.body
    html = received.message.get_body(preferencelist=("html",)).get_content()
    assert 'lang="pt-br"' in html and "Lemos todas as mensagens" in html
    pushed = {status_of(frame): frame for frame in frames}
    assert pushed["sent"].count("Enviado") >= 2  # the badge and the timeline
    assert "Confirmação enviada para ana@example.com." in pushed["sent"]
    assert "(feito)" in pushed["sent"] and "(done)" not in pushed["sent"]
    sending = pushed.get("sending")
    if sending:  # the watcher may connect after the claim
        assert "Enviando" in sending and "Sending" not in sending
    assert Feedback.objects.get().language == "pt-br"


def frames_until_final(ws, *, timeout: float = 30) -> list[str]:
    """Every status fragment the socket pushes (heartbeats aside), until it closes."""
    from websockets.exceptions import ConnectionClosedOK

    frames = []
    try:
        while True:
            frame = ws.recv(timeout=timeout)
            if "data-status=" in frame:
                frames.append(frame)
    except ConnectionClosedOK:
        return frames
