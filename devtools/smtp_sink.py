"""A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives, for the tests.

It can refuse (``fail_next``) or hang up (``drop_after``) at each stage of a
transaction: what a mail server does to a client that must cope. The Outbox's
server (outbox/mailbox.py) is the other handler: it stores mail for the page.
"""

import asyncio
import email
import email.policy
import logging
import threading
from dataclasses import dataclass
from email.message import EmailMessage

from aiosmtpd.controller import Controller

from devtools.ports import free_port
from devtools.processes import wait_until

# aiosmtpd logs every connection at INFO: noise in a failing test's report.
logging.getLogger("mail.log").setLevel(logging.WARNING)


def parse(raw: bytes | str) -> tuple[bytes, EmailMessage]:
    raw = raw.encode() if isinstance(raw, str) else raw
    return raw, email.message_from_bytes(raw, policy=email.policy.default)


@dataclass(frozen=True)
class ReceivedMessage:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage  # parsed with email.policy.default: .get_content() works
    raw: bytes

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        part = self.message.get_body(preferencelist=("plain", "html"))
        return (part or self.message).get_content()


@dataclass(frozen=True)
class Refusal:
    stage: str
    mail_from: str | None
    rcpt_tos: list[str]
    reply: str
    message_id: str | None = None  # at the DATA stage: the refused message's Message-ID


class SmtpSink:
    """Collects messages; ``fail_next`` makes it refuse the next messages first.

    The handler runs on aiosmtpd's thread, tests read from theirs: the shared lists
    are guarded by one lock (``_cond``). ``eight_bit=False``: no 8BITMIME offered;
    ``smtputf8=False``: no SMTPUTF8; other keywords go to aiosmtpd's ``Controller``.
    """

    STAGES = ("MAIL", "RCPT", "DATA")

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, *, eight_bit: bool = True,
                 smtputf8: bool = True, **controller_options) -> None:  # fmt: skip
        self.host = host
        self.port = port if port is not None else free_port(host)
        self._cond = threading.Condition()
        self._messages: list[ReceivedMessage] = []
        self._refusals: list[Refusal] = []
        self._fail: dict[str, list] = {}  # stage -> [remaining, reply]
        self._drop_after: dict[str, int] = {}  # stage -> how many more times to hang up after 250
        self.mail_options: list[list[str]] = []  # MAIL FROM parameters, per transaction
        self.helo_names: list[str] = []  # the EHLO/HELO name, per transaction
        self.peers: list[tuple] = []  # the client's (address, port), per transaction
        # aiosmtpd offers 8BITMIME unless it decodes the data itself.
        self._controller = Controller(self, hostname=host, port=self.port, ready_timeout=10,
                                      decode_data=not eight_bit, enable_SMTPUTF8=smtputf8,
                                      **controller_options)  # fmt: skip

    def start(self) -> "SmtpSink":
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> "SmtpSink":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self._cond:
            return list(self._messages)

    @property
    def refusals(self) -> list[Refusal]:
        with self._cond:
            return list(self._refusals)

    def fail_next(self, n: int = 1, *, code: int = 451, text: str = "Try again later",
                  stage: str = "DATA") -> None:  # fmt: skip
        """Answer ``code text`` to the next ``n`` messages at ``stage`` (MAIL, RCPT or DATA).

        4xx is a temporary refusal (a client should retry), 5xx a permanent one.
        Refused messages are not kept in ``messages``; see ``refusals``.
        """
        if stage not in self.STAGES:
            raise ValueError(f"stage must be one of {self.STAGES}, not {stage!r}")
        with self._cond:
            self._fail[stage] = [n, f"{code} {text}"]

    def drop_after(self, stage: str, n: int = 1) -> None:
        """Answer 250 at ``stage`` (MAIL or DATA) to the next ``n`` messages, then hang up."""
        with self._cond:
            self._drop_after[stage] = n

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[ReceivedMessage]:
        """Block until at least ``count`` messages arrived; return them all."""
        what = f"{count} message(s) received (got {len(self.messages)} so far)"
        return wait_until(lambda: len(self.messages) >= count and self.messages, timeout, what)

    # -- aiosmtpd handler hooks (run on the server's thread) -------------------
    def _hang_up_after_reply(self, stage: str, server) -> None:
        with self._cond:
            if self._drop_after.get(stage, 0) <= 0:
                return
            self._drop_after[stage] -= 1
        # After the reply has been written: close the socket under the client.
        asyncio.get_running_loop().call_soon(server.transport.close)

    def _take_failure(self, stage: str, envelope) -> str | None:
        with self._cond:
            pending = self._fail.get(stage)
            if not pending or pending[0] <= 0:
                return None
            pending[0] -= 1
            message_id = None
            if stage == "DATA":
                message_id = parse(envelope.original_content or envelope.content)[1]["Message-ID"]
            self._refusals.append(Refusal(stage, envelope.mail_from, list(envelope.rcpt_tos),
                                          pending[1], message_id))  # fmt: skip
            return pending[1]

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if reply := self._take_failure("MAIL", envelope):
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        with self._cond:
            self.mail_options.append(list(mail_options))
            self.helo_names.append(session.host_name)
            self.peers.append(tuple(session.peer))
        self._hang_up_after_reply("MAIL", server)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if reply := self._take_failure("RCPT", envelope):
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if reply := self._take_failure("DATA", envelope):
            return reply
        raw, message = parse(envelope.original_content or envelope.content)
        with self._cond:
            self._messages.append(
                ReceivedMessage(envelope.mail_from, list(envelope.rcpt_tos), message, raw)
            )
        self._hang_up_after_reply("DATA", server)
        return "250 Message accepted for delivery"
