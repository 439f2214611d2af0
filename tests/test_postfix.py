"""Against a real Postfix on loopback (Debian's package, a private instance per test).

A real Celery worker sends; Postfix delivers into a maildir we read back. Skipped
locally without Postfix, failed in CI (`.ci/run` installs it).
"""

import re
import time

import idna
import pytest

from devtools.processes import wait_until
from feedback import services
from feedback.forms import FeedbackForm
from feedback.mail import message_lines
from feedback.models import Feedback

# Fast retries, and room for a few of them while a test lifts a refusal.
QUICK = {
    "FEEDBACK_SEND_DELAY": "0",
    "FEEDBACK_RETRY_BACKOFF": "1",
    "FEEDBACK_RETRY_BACKOFF_MAX": "2",
    "FEEDBACK_MAX_ATTEMPTS": "20",
    "EMAIL_HELO_NAME": "feedback.example.org",
}

LONG_LINE = "Lorem ipsum dolor sit amet, " * 60  # 1,680 characters, far over 998 bytes
BATCH = [
    ("ada@example.com", "Olá! Größe, 東京, emoji 🎉 and a zero width joiner 👩‍💻"),
    ("usuário@example.com", "An address with a non-ASCII local part (SMTPUTF8)."),
    ("ada@straße.de", "The domain stays straße.de: xn--strae-oqa.de, not strasse.de."),
    ("用户@例子.中国", "全部是中文的地址"),
    ("bob@example.com", f"A long line:\n{LONG_LINE}\nand after it."),
    ("carol@example.com", "A lone dot follows\n.\nand another one\r\n.\r\nends it."),
    ("dave@example.com", "From the start\nFrom me, to you\n>From quoted\nFrom "),
    ("erin@example.com", "Line separators\u2028stay\u2029inside one line."),
    ("frank@example.com", ".\n..\n...\n. leading dots"),
    ("grace@example.com", "Tabs\tand   spaces   kept\t\nand trailing spaces   \nin the middle"),
    ("heidi@example.com", "Ελληνικά, русский, עברית, العربية, हिन्दी"),
    ("ivan@example.com", "<script>alert(1)</script> & <img src=https://evil.example/x.png>"),
]


def submit(email: str, message: str) -> Feedback:
    """Through the form, as the page does, then queued for the worker."""
    form = FeedbackForm({"email": email, "message": message})
    assert form.is_valid(), form.errors
    return services.feedback_create(
        email=form.cleaned_data["email"], message=form.cleaned_data["message"]
    )


def delivered_for(postfix, feedback: Feedback) -> list:
    message_id = f"<feedback-{feedback.pk}@localhost>"
    return [(raw, m) for raw, m in postfix.delivered() if m["Message-ID"] == message_id]


def quoted_lines(text: str) -> list[str]:
    """The person's lines back out of the plain text part."""
    return [
        line[2:] if line.startswith("> ") else ""
        for line in text.split("\n")
        if line.startswith(">")
    ]


def row(feedback: Feedback) -> Feedback:
    feedback.refresh_from_db()
    return feedback


@pytest.fixture
def worker_for(start_worker, postfix):
    def start(**env):
        return start_worker(
            purge=True, EMAIL_HOST="127.0.0.1", EMAIL_PORT=str(postfix.port), **QUICK, **env
        )

    return start


def test_a_batch_of_unicode_long_lines_dots_and_from_lines_each_arrives_once_exactly(
    postfix, worker_for
):
    worker_for()
    sent = [submit(email, message) for email, message in BATCH]

    wait_until(
        lambda: all(row(f).status == Feedback.Status.SENT for f in sent),
        timeout=60,
        what="all sent",
    )
    wait_until(lambda: len(postfix.delivered()) >= len(BATCH), timeout=30, what="all delivered")
    assert len(postfix.delivered()) == len(BATCH)
    for feedback, (email, message) in zip(sent, BATCH, strict=True):
        [(raw, stored)] = delivered_for(postfix, feedback)
        # A base64 part decodes to MIME's canonical CRLF line ends.
        plain = stored.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")
        html = stored.get_body(preferencelist=("html",)).get_content()
        stored_text = row(feedback).message
        assert stored_text == message.strip()  # the form strips the ends, nothing else
        assert quoted_lines(plain) == message_lines(stored_text), email
        assert "<script" not in html and "<img" not in html
        local, _, domain = email.rpartition("@")
        ascii_domain = idna.encode(domain, uts46=True, transitional=False).decode()
        assert f"Delivered-To: {local}@{ascii_domain}".encode() in raw
    # straße.de is not strasse.de (IDNA 2003 would have mapped it so).
    assert b"Delivered-To: ada@xn--strae-oqa.de" in b"".join(r for r, _ in postfix.delivered())
    # Postfix's Received header names the EHLO name we gave (EMAIL_HELO_NAME).
    assert all(b"Received: from feedback.example.org (" in raw for raw, _ in postfix.delivered())


def test_a_450_at_rcpt_is_retried_with_the_answer_then_sent_once_lifted(postfix, worker_for):
    postfix.refuse("later@example.com", "450 4.2.0 Mailbox busy, try again later")
    worker = worker_for()
    feedback = submit("later@example.com", "Greylist me")

    retrying = wait_until(
        lambda: (f := row(feedback)).status == Feedback.Status.RETRYING and f,
        timeout=30,
        what="retrying",
    )
    assert retrying.failure_text == (
        "The mail server refused the recipient address: 450 4.2.0 <later@example.com>: "
        "Recipient address rejected: Mailbox busy, try again later. "
        "This is temporary: it will be tried again."
    )
    worker.wait_for_log(
        rf"Feedback {feedback.pk}: attempt 1 failed: code=450 "
        r"text='4\.2\.0 <later@example\.com>: Recipient address rejected: Mailbox busy",
        timeout=10,
    )
    postfix.lift()

    wait_until(lambda: row(feedback).status == Feedback.Status.SENT, timeout=30, what="sent")
    wait_until(lambda: delivered_for(postfix, feedback), timeout=30, what="delivered")
    time.sleep(1)
    assert len(delivered_for(postfix, feedback)) == 1
    assert row(feedback).attempts >= 2


def test_a_550_at_rcpt_fails_at_once_with_the_answer(postfix, worker_for):
    worker = worker_for()
    feedback = submit("nobody@example.com", "Is anyone there?")

    wait_until(lambda: row(feedback).status == Feedback.Status.FAILED, timeout=30, what="failed")
    feedback = row(feedback)
    assert feedback.failure_text == (
        "The mail server refused the recipient address: 550 5.1.1 <nobody@example.com>: "
        "Recipient address rejected: User unknown in virtual mailbox table. "
        "This is permanent: it will not be tried again."
    )
    assert feedback.attempts == 1
    worker.wait_for_log(
        rf"Feedback {feedback.pk}: attempt 1 failed: code=550 text='5\.1\.1 .*; final", timeout=10
    )
    assert postfix.delivered() == []


def test_postfix_stopped_and_started_again_every_email_is_sent_once(postfix, worker_for):
    worker_for()
    postfix.stop()
    waiting = [
        submit(f"user{n}@example.com", f"Message {n} while Postfix is down") for n in range(5)
    ]
    wait_until(
        lambda: all(row(f).status == Feedback.Status.RETRYING for f in waiting),
        timeout=60,
        what="all retrying",
    )
    assert all(
        re.fullmatch(
            r"The mail server refused the connection\. .*tried again\.", row(f).failure_text
        )
        for f in waiting
    )
    postfix.start()

    wait_until(
        lambda: all(row(f).status == Feedback.Status.SENT for f in waiting),
        timeout=60,
        what="all sent",
    )
    wait_until(lambda: len(postfix.delivered()) >= len(waiting), timeout=30, what="delivered")
    time.sleep(1)
    for feedback in waiting:
        assert len(delivered_for(postfix, feedback)) == 1
    assert len(postfix.delivered()) == len(waiting)
