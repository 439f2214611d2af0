"""The Outbox's mailbox: the file the development SMTP server writes, and its reader.

``make run`` starts the server when ``EMAIL_HOST`` is unset (``python manage.py
mailbox``, see ``outbox/management/commands/mailbox.py``), so the confirmation
emails really travel over SMTP, and the debug-only Outbox page lists them.

The server appends each message to the file (``settings.DEV_MAILBOX``) as it came,
one JSON line: its envelope and its bytes. It parses nothing before its 250: the
sender waits for that answer, and the longer it waits the wider the window in
which a sender killed after the message was stored sends it again. The Outbox
reads the file (``read_mails``) and parses then. One writer (the server), any
number of readers: a half-written last line is skipped, never an error.
"""

import email
import email.policy
import functools
import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True)
class Mail:
    received_at: datetime
    mail_from: str
    rcpt_tos: list[str]
    to: str
    subject: str
    message_id: str
    body: str
    html: str = ""  # the text/html alternative, when the email had one

    @property
    def has_html(self) -> bool:
        return bool(self.html)

    @property
    def anchor(self) -> str:
        """A page anchor from the Message-ID's local part, so a link can point at this mail."""
        local = self.message_id.strip("<>").partition("@")[0]
        return "".join(c if c.isalnum() or c in "-_." else "-" for c in local)


def stored_line(*, mail_from: str, rcpt_tos: list[str], raw: bytes) -> str:
    """One message as the server stores it: the envelope and the bytes as received
    (8-bit bytes that are not UTF-8 kept by surrogateescape)."""
    return json.dumps({
        "received_at": datetime.now(UTC).isoformat(), "mail_from": mail_from,
        "rcpt_tos": list(rcpt_tos), "raw": raw.decode("utf-8", "surrogateescape"),
    })  # fmt: skip


def text_of(part) -> str:
    try:
        text = part.get_content()
    except LookupError:  # a charset Python does not know: the bytes as UTF-8, mended
        text = part.get_payload(decode=True).decode("utf-8", "replace")
    return text.replace("\r\n", "\n")  # lines end in CRLF on the wire; the page wants text


@functools.lru_cache(maxsize=256)
def parse_line(line: str) -> Mail:
    """A stored line as a Mail (parsed once per process: the Outbox reads them again)."""
    record = json.loads(line)
    raw = record["raw"].encode("utf-8", "surrogateescape")
    message = email.message_from_bytes(raw, policy=email.policy.default)
    part = message.get_body(preferencelist=("plain", "html"))
    html = message.get_body(preferencelist=("html",))
    return Mail(
        received_at=datetime.fromisoformat(record["received_at"]),
        mail_from=record["mail_from"],
        rcpt_tos=list(record["rcpt_tos"]),
        to=str(message.get("To", "")),
        subject=str(message.get("Subject", "")),
        message_id=str(message.get("Message-ID", "")),
        body=text_of(part or message),
        html=text_of(html) if html is not None and html is not part else "",
    )


def read_mails(path: Path, *, limit: int = 100) -> list[Mail]:
    """The last ``limit`` mails in the file, newest first; none if there is no file."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    mails = []
    for line in reversed(lines):
        try:
            mails.append(parse_line(line))
        except (ValueError, TypeError, LookupError, AttributeError):
            continue  # a line still being written, or not ours
        if len(mails) >= limit:
            break
    return mails


class MailboxHandler:
    """aiosmtpd handler: append every message to ``path`` as a JSON line, unparsed."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode()
        line = stored_line(mail_from=envelope.mail_from, rcpt_tos=envelope.rcpt_tos, raw=raw)
        with self._lock, self.path.open("a", encoding="utf-8") as mailbox:
            mailbox.write(line + "\n")
        return "250 Message accepted for delivery"


def serve(*, host: str, port: int, path: Path):
    """Start the SMTP server in a background thread; returns its aiosmtpd Controller."""
    from aiosmtpd.controller import Controller

    controller = Controller(MailboxHandler(path), hostname=host, port=port, ready_timeout=10)
    controller.start()
    return controller
