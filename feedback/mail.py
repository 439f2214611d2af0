"""The confirmation email: building it, sending it over SMTP, and saying why a send failed."""

import contextlib
import smtplib
import socket
import ssl

from django.conf import settings
from django.core import mail
from django.core.mail import EmailMessage
from django.template.loader import render_to_string

from .models import Feedback


class DeliveryError(Exception):
    """The confirmation could not be sent; `reason` is fit to show a person.

    `transient`: trying again later may work (a 4xx reply, a refused or
    dropped connection, a timeout); otherwise it will fail the same way.
    """

    def __init__(self, reason: str, *, cause: BaseException, transient: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.cause = cause
        self.transient = transient


def build_confirmation_email(*, feedback: Feedback) -> EmailMessage:
    quoted = "\n".join(f"> {line}" for line in feedback.message.splitlines()) or ">"
    body = render_to_string(
        "feedback/confirmation_email.txt", {"feedback": feedback, "quoted": quoted}
    )
    domain = settings.DEFAULT_FROM_EMAIL.rpartition("@")[2].strip(">") or "localhost"
    return EmailMessage(
        subject="Thanks for your feedback",
        body=body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[feedback.email],
        # Stable per feedback, so a mail that was accepted but not recorded as
        # sent (the worker died in between) can be deduplicated downstream.
        headers={"Message-ID": f"<feedback-{feedback.pk}@{domain}>"},
    )


def send_confirmation(*, feedback: Feedback) -> None:
    """Send the confirmation over the default mailer.

    SMTP and network errors are raised as DeliveryError, and so is an address
    Django refuses to put in a header (a line break: header injection).
    """
    message = build_confirmation_email(feedback=feedback)
    mailer = mail.mailers.default
    try:
        # Opened here so that send_messages() does not close the connection:
        # once the server has accepted the message, a failure while saying
        # goodbye (QUIT) must not count as a failed send and mail it again.
        mailer.open()
        mailer.send_messages([message])
    except (smtplib.SMTPException, OSError) as error:
        raise DeliveryError(
            describe_send_error(error), cause=error, transient=is_transient_send_error(error)
        ) from error
    except ValueError as error:
        # Django refuses a header with a line break (header injection). The
        # form refuses such addresses; this guards rows stored any other way.
        raise DeliveryError(
            "The email address cannot be used.", cause=error, transient=False
        ) from error
    finally:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            mailer.close()


def _smtp_code(error: BaseException) -> int | None:
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        # Refused as a whole only if every recipient's refusal was permanent.
        codes = [code for code, _ in error.recipients.values()]
        return max(codes) if codes else None
    return getattr(error, "smtp_code", None)


def is_transient_send_error(error: BaseException) -> bool:
    """Whether sending again later may succeed.

    SMTP says so itself: 4xx replies are temporary, 5xx permanent (recipient
    refused, credentials rejected). A connection that was refused, dropped
    or timed out is transient; TLS certificate problems and unsupported
    features are configuration, so permanent.
    """
    code = _smtp_code(error)
    if isinstance(code, int) and 400 <= code < 600:
        return code < 500
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return True
    if isinstance(error, ssl.SSLCertVerificationError):
        return False
    if isinstance(error, smtplib.SMTPException):
        return False  # e.g. AUTH or STARTTLS not supported: configuration
    return isinstance(error, OSError)


def describe_send_error(error: BaseException) -> str:
    """A reason a person can read, without a traceback."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return "The mail server refused the recipient address."
    if isinstance(error, smtplib.SMTPAuthenticationError):
        return "The mail server did not accept our credentials."
    if isinstance(error, smtplib.SMTPServerDisconnected):
        if "timed out" in str(error):  # smtplib wraps a read timeout this way
            return "The mail server did not answer in time."
        return "The mail server closed the connection."
    if isinstance(error, smtplib.SMTPResponseException):
        text = error.smtp_error
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        return f"The mail server answered {error.smtp_code}: {text}".strip()
    if isinstance(error, TimeoutError | socket.timeout):
        return "The mail server did not answer in time."
    if isinstance(error, ConnectionRefusedError):
        return "The mail server refused the connection."
    if isinstance(error, OSError):
        return "The mail server could not be reached."
    return "The email could not be sent."
