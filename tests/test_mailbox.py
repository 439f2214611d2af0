"""The Outbox's mailbox (outbox.mailbox, `manage.py mailbox`): what `make run` sends mail to."""

import email
import json
import smtplib
import subprocess
import sys
from email.message import EmailMessage

import pytest

from devtools import run
from devtools.ports import free_port, port_is_open
from devtools.processes import REPO_ROOT, wait_until
from outbox.mailbox import read_mails, serve, stored_line


def message(to: str, subject: str, body: str, message_id: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = "Feedback <feedback@localhost>"
    mail["To"] = to
    mail["Subject"] = subject
    mail["Message-ID"] = message_id
    mail.set_content(body)
    return mail


@pytest.fixture
def mailbox(tmp_path):
    path = tmp_path / "var" / "mailbox.jsonl"
    controller = serve(host="127.0.0.1", port=free_port(), path=path)
    yield controller, path
    controller.stop()


def test_received_mail_is_stored_and_read_back_newest_first(mailbox):
    controller, path = mailbox
    with smtplib.SMTP(controller.hostname, controller.port, timeout=10) as smtp:
        smtp.send_message(message("ada@example.com", "First", "Hello\n> quoted", "<feedback-1@x>"))
        smtp.send_message(message("bob@example.com", "Second", "Hi", "<feedback-2@x>"))
    first, second = reversed(read_mails(path))
    assert (first.to, first.subject, first.anchor) == ("ada@example.com", "First", "feedback-1")
    assert first.body == "Hello\n> quoted\n"
    assert first.rcpt_tos == ["ada@example.com"]
    assert first.mail_from == "feedback@localhost"
    assert second.received_at >= first.received_at
    assert [mail.subject for mail in read_mails(path, limit=1)] == ["Second"]


def test_a_missing_file_is_an_empty_mailbox_and_a_torn_line_is_skipped(tmp_path):
    path = tmp_path / "mailbox.jsonl"
    assert read_mails(path) == []
    raw = message("b@x", "Whole", "ok", "<m@x>").as_bytes()
    line = stored_line(mail_from="a@x", rcpt_tos=["b@x"], raw=raw)
    path.write_text(line + "\n" + line[:20])
    assert [mail.subject for mail in read_mails(path)] == ["Whole"]


# A charset Python does not know, and a byte that is not UTF-8.
ODD = (
    b"From: a@x\r\nTo: b@x\r\nSubject: Odd\r\nMessage-ID: <odd@x>\r\n"
    b"Content-Type: text/plain; charset=x-unknown\r\n\r\nCaf\xe9 ok\r\n"
)


def test_the_server_stores_the_bytes_as_received_and_parses_nothing_before_its_250(
    mailbox, monkeypatch
):
    """The sender waits for the 250 (a sender killed meanwhile sends again), so the server
    answers once the message is on disk, not once it is understood: the parser is the
    reader's. A message only the reader finds odd is kept byte for byte and shown mended."""
    controller, path = mailbox

    def parse(*args, **kwargs):
        raise AssertionError("the server parsed the message before its 250")

    with monkeypatch.context() as server_side:
        server_side.setattr(email, "message_from_bytes", parse)
        with smtplib.SMTP(controller.hostname, controller.port, timeout=10) as smtp:
            assert smtp.sendmail("a@x", ["b@x"], ODD) == {}  # no refusal
    [line] = path.read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["raw"].encode("utf-8", "surrogateescape") == ODD
    [mail] = read_mails(path)
    assert (mail.subject, mail.rcpt_tos, mail.body) == ("Odd", ["b@x"], "Caf\ufffd ok\n")


def test_the_mailbox_command_runs_as_a_process_and_stops_on_sigterm(tmp_path):
    port, path = free_port(), tmp_path / "mailbox.jsonl"
    command = [sys.executable, "manage.py", "mailbox", "--port", str(port), "--file", str(path)]
    proc = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: port_is_open("127.0.0.1", port), 20, "the mailbox listening")
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.send_message(message("ada@example.com", "Via a process", "Hi", "<m@x>"))
        assert [mail.subject for mail in read_mails(path)] == ["Via a process"]
        proc.terminate()
        assert proc.wait(timeout=10) == 0
        assert "storing mail in" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_make_run_starts_the_mailbox_only_without_email_host(tmp_path):
    assert run.resolve_mailbox({"EMAIL_HOST": "smtp.example.com"}) is None
    mailbox = run.resolve_mailbox({"DEV_MAILBOX": str(tmp_path / "m.jsonl")})
    assert mailbox.path == tmp_path / "m.jsonl"
    assert mailbox.app_env() == {
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(mailbox.port),
        "DEV_MAILBOX": str(tmp_path / "m.jsonl"),
        "DEV_MAILBOX_IN_USE": "1",  # only then do sent statuses link to the Outbox
    }
    stack = run.Stack(
        host="127.0.0.1", port=8000, redis=run.RedisChoice(url="redis://x:1/0"), mailbox=mailbox
    )
    processes = run.build_processes(stack)
    assert list(processes) == ["mail", "worker", "beat", "web"]
    mail = " ".join(processes["mail"].argv)
    assert f"manage.py mailbox --host 127.0.0.1 --port {mailbox.port}" in mail


def test_flower_is_off_unless_asked_for():
    assert run.resolve_flower({}) is None
    assert run.resolve_flower({"FLOWER": "0"}) is None
    assert run.resolve_flower({"FLOWER": "1"}) == 5555
    assert run.resolve_flower({"FLOWER": "1", "FLOWER_PORT": "5600"}) == 5600
    stack = run.Stack(
        host="127.0.0.1", port=8000, redis=run.RedisChoice(url="redis://x:1/0"), flower_port=5600
    )
    flower = " ".join(run.build_processes(stack)["flower"].argv)
    assert "celery -A django_celery flower --address=127.0.0.1 --port=5600" in flower
    stack.flower_port = None
    assert "flower" not in run.build_processes(stack)
