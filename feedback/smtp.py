"""The SMTP side of the confirmation: addresses, extensions, and what a refusal means.

`EmailBackend` is Django's SMTP backend with what real servers expect:
the EHLO name from settings, domains in IDNA 2008 (UTS #46, non-transitional),
SMTPUTF8 for a non-ASCII local part (refused plainly when the server does
not offer it), and 8-bit bodies either declared (`BODY=8BITMIME`) or
re-encoded 7-bit clean. `describe_send_error` turns any SMTP failure into
a reason code (feedback/wording.py says it in words, with the server's code and text).
"""

import email.policy
import functools
import smtplib
import socket
import ssl
import threading
import unicodedata
from email.headerregistry import Address, HeaderRegistry

import idna
from django.conf import settings
from django.core.mail.backends import smtp

from .wording import Reason

SERVER_TEXT_MAX = 200


class SmtpUtf8Unsupported(smtplib.SMTPNotSupportedError):
    """The address needs SMTPUTF8 (RFC 6531) and the server does not offer it."""


def domain_to_ascii(domain: str) -> str:
    """The A-label form of a domain, by IDNA 2008 (UTS #46 mapping, non-transitional).

    Unlike Python's "idna" codec (IDNA 2003), "straße.de" stays another
    domain than "strasse.de": xn--strae-oqa.de. Raises ValueError (an
    idna.IDNAError) when the domain cannot be converted.
    """
    if domain.isascii():
        if "xn--" in domain.lower():
            idna.decode(domain)  # an A-label must decode: "xn--zz" is no domain
        return domain.lower()
    return idna.encode(domain, uts46=True, transitional=False).decode("ascii")


def envelope_address(address: str) -> str:
    """The addr-spec for the SMTP envelope: the domain in A-labels, the local part as written.

    Raises ValueError for anything but one plain address (a line break in a
    header, two addresses, a malformed domain).
    """
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"not an address: {address!r}")
    if any(unicodedata.category(char)[0] in "CZ" for char in address):
        raise ValueError(f"control, format or space characters in {address!r}")
    return f"{local}@{domain_to_ascii(domain)}"


def header_address(address: str, display_name: str = "") -> Address:
    local, _, domain = envelope_address(address).rpartition("@")
    return Address(display_name=display_name, username=local, domain=domain)


class _Headers(HeaderRegistry):
    """The standard library's header factory, with each header's class made once and each
    header value parsed once.

    HeaderRegistry builds a new class (``type(...)``) for every header it
    parses, a couple of dozen per confirmation: about a third of building
    the message. The classes hold no state, so one per header name serves.
    Then most of what is left is parsing values that every confirmation
    repeats (the sender, the subject in each language, MIME-Version and the
    parts' Content-Type and Content-Transfer-Encoding): a parsed header is
    immutable (a change to a message replaces it), so one per name and value
    serves every message. The recently used ones are kept (the repeated ones
    stay; the recipient, date and Message-ID of each message pass through).
    """

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type] = {}
        self._parsed = functools.lru_cache(maxsize=HEADERS_KEPT)(super().__call__)

    def __getitem__(self, name: str) -> type:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(key)
        return cls

    def __call__(self, name: str, value):
        if isinstance(value, str):  # not a date or an address list: those are made anew
            return self._parsed(name, value)
        return super().__call__(name, value)


HEADERS_KEPT = 64
_HEADERS = _Headers()
SMTP_POLICY = email.policy.SMTP.clone(header_factory=_HEADERS)
SMTPUTF8_POLICY = email.policy.SMTPUTF8.clone(header_factory=_HEADERS)


class EmailBackend(smtp.EmailBackend):
    """Django's SMTP backend, each message sent by `send_message` on the open connection.

    `send_message` returns as soon as the server's 250 for the DATA has been
    read, so a caller can record the acceptance before anything else
    (feedback.mail.KeptMailer, docs/decisions).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sending = threading.RLock()

    @property
    def connection_class(self):
        base = smtplib.SMTP_SSL if self.use_ssl else smtplib.SMTP
        helo_name = settings.EMAIL_HELO_NAME

        class Connection(base):
            def __init__(self, *args, **kwargs):
                kwargs["local_hostname"] = helo_name
                super().__init__(*args, **kwargs)

        return Connection

    def send_messages(self, email_messages) -> int:
        if not email_messages:
            return 0
        with self.sending:
            opened = self.open()
            if not self.connection or opened is None:
                return 0  # failed silently on open()
            sent = 0
            try:
                for email_message in email_messages:
                    try:
                        sent += self.send_message(email_message)
                    except smtplib.SMTPException:
                        if not self.fail_silently:
                            raise
            finally:
                if opened:
                    self.close()
        return sent

    def send_message(self, email_message) -> bool:
        """Send one message on the open connection; True once the server accepted it."""
        recipients = email_message.recipients()
        if not recipients:
            return False
        connection = self.connection
        sender = envelope_address(Address(addr_spec=_addr_spec(email_message.from_email)).addr_spec)
        to = [envelope_address(_addr_spec(recipient)) for recipient in recipients]
        connection.ehlo_or_helo_if_needed()
        mail_options = []
        policy = SMTP_POLICY
        if not all(address.isascii() for address in (sender, *to)):
            if not connection.has_extn("smtputf8"):
                raise SmtpUtf8Unsupported(
                    "the address has non-ASCII characters before the @ and the server "
                    "does not offer SMTPUTF8"
                )
            mail_options.append("SMTPUTF8")
            policy = SMTPUTF8_POLICY
        message = email_message.message(policy=policy)
        if _has_8bit_parts(message):
            if connection.has_extn("8bitmime"):
                mail_options.append("BODY=8BITMIME")
            else:
                _make_7bit_clean(message)
        connection.sendmail(sender, to, message.as_bytes(policy=policy), mail_options)
        return True


def _addr_spec(address: str) -> str:
    """The bare address of "Name <a@b>" or "a@b", without the header machinery (no IDNA 2003)."""
    address = str(address).strip()
    if address.endswith(">") and "<" in address:
        return address[address.rindex("<") + 1 : -1]
    return address


def _text_leaves(message):
    for part in message.walk():
        if not part.is_multipart() and part.get_content_maintype() == "text":
            yield part


def _has_8bit_parts(message) -> bool:
    return any(
        str(part.get("Content-Transfer-Encoding", "")).lower() == "8bit"
        for part in _text_leaves(message)
    )


def _make_7bit_clean(message) -> None:
    """Re-encode each 8-bit text part as quoted-printable (for a server without 8BITMIME)."""
    for part in _text_leaves(message):
        if str(part.get("Content-Transfer-Encoding", "")).lower() != "8bit":
            continue
        text = part.get_content()
        subtype = part.get_content_subtype()
        del part["Content-Type"]
        del part["Content-Transfer-Encoding"]
        part.set_content(text, subtype=subtype, charset="utf-8", cte="quoted-printable")


# -- What a failure means ------------------------------------------------------

# The stage a server's answer came at: its words are said at render (feedback/wording.py).
STAGES = {
    smtplib.SMTPConnectError: Reason.SMTP_CONNECT,
    smtplib.SMTPHeloError: Reason.SMTP_HELO,
    smtplib.SMTPSenderRefused: Reason.SMTP_SENDER,
    smtplib.SMTPRecipientsRefused: Reason.SMTP_RECIPIENT,
    smtplib.SMTPDataError: Reason.SMTP_DATA,
    smtplib.SMTPAuthenticationError: Reason.SMTP_AUTH,
}


def server_text(text: bytes | str) -> str:
    """The server's text, fit to show: decoded, control characters removed, shortened."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    cleaned = "".join(" " if unicodedata.category(char)[0] in "CZ" else char for char in str(text))
    cleaned = " ".join(cleaned.split())
    if len(cleaned) > SERVER_TEXT_MAX:
        cleaned = cleaned[: SERVER_TEXT_MAX - 1].rstrip() + "…"
    return cleaned


def server_answer(error: BaseException) -> tuple[int, str] | None:
    """The (code, text) the server answered, if the failure was an SMTP reply."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        answers = list(error.recipients.values())
        if not answers:
            return None
        # Refused as a whole only if every recipient's refusal was permanent.
        code, text = max(answers, key=lambda answer: answer[0])
        return code, server_text(text)
    code = getattr(error, "smtp_code", None)
    if isinstance(code, int) and code > 0:
        return code, server_text(getattr(error, "smtp_error", b""))
    return None


def is_transient_send_error(error: BaseException) -> bool:
    """Whether sending again later may succeed.

    SMTP says so itself: 4xx replies are temporary, 5xx permanent (recipient
    refused, credentials rejected). A connection that was refused, dropped
    or timed out is transient; TLS certificate problems and unsupported
    features are configuration, so permanent.
    """
    answer = server_answer(error)
    if answer and 400 <= answer[0] < 600:
        return answer[0] < 500
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return True
    if isinstance(error, ssl.SSLCertVerificationError):
        return False
    if isinstance(error, smtplib.SMTPException):
        return False  # e.g. AUTH, STARTTLS or SMTPUTF8 not supported: configuration
    return isinstance(error, OSError)


def describe_send_error(error: BaseException) -> Reason:
    """Why it failed, as a reason code (the server's answer, if any: server_answer)."""
    if server_answer(error):
        return next(
            (reason for kind, reason in STAGES.items() if isinstance(error, kind)),
            Reason.SMTP_ANSWER,
        )
    if isinstance(error, SmtpUtf8Unsupported):
        return Reason.NO_SMTPUTF8
    if isinstance(error, smtplib.SMTPServerDisconnected):
        if "timed out" in str(error):  # smtplib wraps a read timeout this way
            return Reason.TIMED_OUT
        return Reason.CLOSED
    if isinstance(error, TimeoutError | socket.timeout):
        return Reason.TIMED_OUT
    if isinstance(error, ConnectionRefusedError):
        return Reason.REFUSED
    if isinstance(error, OSError):
        return Reason.UNREACHABLE
    return Reason.NOT_SENT
