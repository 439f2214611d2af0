"""The confirmation email: building it, sending it over SMTP, and saying why a send failed."""

import atexit
import contextlib
import copy
import logging
import os
import re
import select
import smtplib
import threading
from collections.abc import Callable

from django.conf import settings
from django.core import mail
from django.core.mail import EmailMultiAlternatives
from django.core.mail.handler import DEFAULT_MAILER_ALIAS
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext

from .models import Feedback
from .smtp import (
    describe_send_error,
    domain_to_ascii,
    envelope_address,
    is_transient_send_error,
    server_answer,
)
from .wording import Failure, Outcome, Reason

logger = logging.getLogger(__name__)

# Only real line breaks split the quoted message: not U+2028/U+2029, form
# feeds or the other separators str.splitlines() also breaks on.
LINE_BREAK = re.compile(r"\r\n|\r|\n")


class DeliveryError(Exception):
    """The confirmation could not be sent; `reason` is a code (wording.Reason).

    `transient`: trying again later may work (a 4xx reply, a refused or
    dropped connection, a timeout); otherwise it will fail the same way.
    `code` and `server_text` are the mail server's answer, when there was one.
    """

    def __init__(self, reason: str, *, cause: BaseException, transient: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.cause = cause
        self.transient = transient
        self.code, self.server_text = server_answer(cause) or (None, "")

    def reason_for(self, *, retrying: bool, attempts: int | None = None) -> Failure:
        """The failure as the row keeps it, with whether the email will be tried again
        (`attempts`: it will not, they are used up)."""
        if retrying:
            outcome = Outcome.RETRYING
        elif attempts is not None:
            outcome = Outcome.GAVE_UP
        else:
            outcome = Outcome.FINAL if self.transient else Outcome.PERMANENT
        return Failure(
            reason=self.reason,
            outcome=outcome,
            smtp_code=self.code,
            smtp_text=self.server_text,
            attempts=attempts,
        )


def log_failed_attempt(*, feedback_id, error: DeliveryError, attempt: int, retrying: bool) -> None:
    """One log line per failed attempt: the server's code and text, never the status token."""
    logger.warning(
        "Feedback %s: attempt %s failed: code=%s text=%r reason=%r; %s",
        feedback_id,
        attempt,
        error.code if error.code is not None else "-",
        error.server_text,
        str(error.reason),
        "will retry" if retrying else "final",
    )


def message_lines(message: str) -> list[str]:
    """The person's lines: split only on CR LF, CR or LF (trailing ones dropped)."""
    return LINE_BREAK.split(message.rstrip("\r\n"))


def message_id_domain() -> str:
    """EMAIL_MESSAGE_ID_DOMAIN, else the domain of DEFAULT_FROM_EMAIL, else the EHLO name."""
    if settings.EMAIL_MESSAGE_ID_DOMAIN:
        return settings.EMAIL_MESSAGE_ID_DOMAIN
    sender = settings.DEFAULT_FROM_EMAIL.strip().rstrip(">")
    domain = sender.rpartition("@")[2].strip()
    try:
        return domain_to_ascii(domain) if domain else settings.EMAIL_HELO_NAME.strip("[]")
    except UnicodeError:
        return settings.EMAIL_HELO_NAME.strip("[]")


def build_confirmation_email(*, feedback: Feedback) -> EmailMultiAlternatives:
    """The confirmation, in the language the feedback was submitted in."""
    with translation.override(feedback.language):
        return _build_confirmation_email(feedback=feedback)


def _build_confirmation_email(*, feedback: Feedback) -> EmailMultiAlternatives:
    lines = message_lines(feedback.message)
    quoted = "\n".join(f"> {line}" if line else ">" for line in lines)
    context = {"feedback": feedback, "quoted": quoted, "lines": lines}
    message = EmailMultiAlternatives(
        subject=gettext("Thanks for your feedback"),
        body=render_to_string("feedback/confirmation_email.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        # The domain as the envelope carries it (IDNA 2008 A-labels).
        to=[envelope_address(feedback.email)],
        # Stable per feedback, so a mail that was accepted but not recorded as
        # sent (the worker died in between) can be deduplicated downstream.
        headers={"Message-ID": f"<feedback-{feedback.pk}@{message_id_domain()}>"},
    )
    message.attach_alternative(
        render_to_string("feedback/confirmation_email.html", context), "text/html"
    )
    return message


class KeptMailer:
    """One connection to the mail server per process, kept from one email to the next.

    A worker process sends one email after another: opening a connection
    (TCP, greeting, EHLO) and closing it (QUIT) for each cost more than the
    message itself. The kept one is checked before each use without a round
    trip: an idle SMTP connection has nothing to read, so a readable socket
    means the server closed it (its idle timeout, a hang-up after its 250) or
    said goodbye (421), and a new one is opened. Any failure while sending
    drops it: its state is unknown. A second thread of the same process (the
    old way, in daphne's threads) meanwhile gets a connection of its own,
    closed after its email, as before.

    The rule that a failure after the server's 250 counts as sent holds as
    before: once the message is accepted nothing else is said on the
    connection for it (no QUIT), so nothing after the 250 can fail its send.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mailer = None
        self._config = None

    def send(self, message: EmailMultiAlternatives, *, accepted: Callable[[], object]) -> None:
        """Send `message`; call `accepted` as soon as the server took it, before anything else."""
        if not self._lock.acquire(blocking=False):
            self._send_once(message, accepted=accepted)
            return
        try:
            mailer = self._ready()
            try:
                mailer.send_messages([message])
            except BaseException:  # a soft time limit too: the connection's state is unknown
                self.close()
                raise
            accepted()
        finally:
            self._lock.release()

    def _ready(self):
        config = mail.mailers.settings.get(DEFAULT_MAILER_ALIAS)
        if self._mailer is not None and (config != self._config or self._closed_by_server()):
            self.close()
        if self._mailer is None:
            mailer = mail.mailers.default
            try:
                # Opened here, so send_messages() leaves it open (it closes only what it opened).
                mailer.open()
            except BaseException:
                with contextlib.suppress(smtplib.SMTPException, OSError):
                    mailer.close()  # a connection opened halfway (refused at STARTTLS, AUTH)
                raise
            self._mailer, self._config = mailer, copy.deepcopy(config)
        return self._mailer

    def _closed_by_server(self) -> bool:
        connection = getattr(self._mailer, "connection", None)
        if not isinstance(connection, smtplib.SMTP):
            return False  # not SMTP (the console in development): nothing to go stale
        sock = connection.sock
        if sock is None:
            return True
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    @staticmethod
    def _send_once(message: EmailMultiAlternatives, *, accepted: Callable[[], object]) -> None:
        mailer = mail.mailers.default
        try:
            mailer.open()
            mailer.send_messages([message])
            accepted()
        finally:
            # A failure while saying goodbye (QUIT) after the server accepted
            # the message must not count as a failed send and mail it again.
            with contextlib.suppress(smtplib.SMTPException, OSError):
                mailer.close()

    def close(self) -> None:
        mailer, self._mailer, self._config = self._mailer, None, None
        if mailer is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                mailer.close()

    def forget(self) -> None:
        """In a forked child (Celery's prefork pool): the parent's connection is not ours."""
        self._lock = threading.Lock()
        self._mailer = None
        self._config = None


kept_mailer = KeptMailer()
os.register_at_fork(after_in_child=kept_mailer.forget)
atexit.register(kept_mailer.close)


def send_confirmation(*, feedback: Feedback, accepted: Callable[..., object]) -> str:
    """Send the confirmation over the default mailer, on this process's kept connection;
    return its Message-ID.

    `accepted(message_id)` is called right after the server's 250, before
    anything else (the receipt, feedback/receipts.py). SMTP and network errors
    are raised as DeliveryError, and so is an address Django refuses to put
    in a header (a line break: header injection).
    """
    try:
        message = build_confirmation_email(feedback=feedback)
        message_id = message.extra_headers["Message-ID"]
        kept_mailer.send(message, accepted=lambda: accepted(message_id=message_id))
        return message_id
    except (smtplib.SMTPException, OSError) as error:
        raise DeliveryError(
            describe_send_error(error), cause=error, transient=is_transient_send_error(error)
        ) from error
    except ValueError as error:
        # Django refuses a header with a line break (header injection). The
        # form refuses such addresses; this guards rows stored any other way.
        raise DeliveryError(Reason.BAD_ADDRESS, cause=error, transient=False) from error
