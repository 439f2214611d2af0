"""The debug-only Outbox page."""

import json
from email.message import EmailMessage

import httpx
import pytest
from django.test import RequestFactory

from outbox.views import outbox_index

pytestmark = pytest.mark.django_db


def record(subject: str, to: str, body: str) -> str:
    """A line as the Outbox's server stores it: the envelope and the message's bytes."""
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "feedback@localhost", to, subject
    mail["Message-ID"] = "<feedback-123@localhost>"
    mail.set_content(body)
    return json.dumps({
        "received_at": "2026-01-01T12:00:00+00:00", "mail_from": "feedback@localhost",
        "rcpt_tos": [to], "raw": mail.as_bytes().decode(),
    })  # fmt: skip


def test_the_outbox_lists_received_mail_newest_first(settings, tmp_path):
    settings.DEV_MAILBOX = tmp_path / "mailbox.jsonl"
    settings.DEV_MAILBOX.write_text(
        record("Older", "ada@example.com", "Hello") + "\n"
        + record("Newer", "bob@example.com", "<script>x</script>") + "\n"
    )  # fmt: skip
    html = outbox_index(RequestFactory().get("/outbox/")).content.decode()
    assert html.index("Newer") < html.index("Older")
    assert "bob@example.com" in html and "2026-01-01 12:00:00 UTC" in html
    assert 'id="mail-feedback-123"' in html
    assert "&lt;script&gt;x&lt;/script&gt;" in html  # a body is text, never markup


def test_an_empty_outbox_says_where_mail_would_appear(settings, tmp_path):
    settings.DEV_MAILBOX = tmp_path / "nothing-here.jsonl"
    html = outbox_index(RequestFactory().get("/outbox/")).content.decode()
    assert "No email received yet" in html
    assert str(settings.DEV_MAILBOX) in html


def test_without_debug_the_outbox_is_not_routed(client):
    # Tests run with DEBUG off, like production: no route, so a 404 and no link.
    assert client.get("/outbox/").status_code == 404
    assert "/outbox/" not in client.get("/").content.decode()


PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "a-test-secret-that-is-long-enough-for-production-checks",
    "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
    "DJANGO_SECURE_SSL_REDIRECT": "0",  # plain HTTP on the loopback
}


@pytest.mark.parametrize(("env", "status"), [(PRODUCTION, 404), ({"DJANGO_DEBUG": "1"}, 200)])
def test_the_outbox_exists_only_when_django_debug_is_on(start_daphne, env, status):
    server = start_daphne(**env)
    assert httpx.get(f"{server.url}/outbox/", timeout=10).status_code == status
