"""What a card says about a send: stored as codes and data, put into words when it renders.

So a card reads in the language of whoever reads it, whichever language it was
submitted in; only the mail server's own answer is kept as it sent it.
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from django.db import models
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _


class Step(models.TextChoices):
    """The steps of a send (the simulated slow mail service), in order."""

    PREPARING = "preparing", _("Preparing your confirmation")
    CONNECTING = "connecting", _("Connecting to the mail server")
    HANDING_OVER = "handing-over", _("Handing the message over")


class Reason(models.TextChoices):
    """Why a send did not go through. The SMTP ones name the stage the server answered at."""

    SMTP_CONNECT = "smtp-connect", _("The mail server refused the connection")
    SMTP_HELO = "smtp-helo", _("The mail server refused our greeting (EHLO)")
    SMTP_SENDER = "smtp-sender", _("The mail server refused the sender address")
    SMTP_RECIPIENT = "smtp-recipient", _("The mail server refused the recipient address")
    SMTP_DATA = "smtp-data", _("The mail server refused the message")
    SMTP_AUTH = "smtp-auth", _("The mail server did not accept our credentials")
    SMTP_ANSWER = "smtp-answer", _("The mail server answered")
    NO_SMTPUTF8 = (
        "no-smtputf8",
        _(
            "The address has non-ASCII characters before the @, and the mail server "
            "does not accept such addresses (no SMTPUTF8)."
        ),
    )
    TIMED_OUT = "timed-out", _("The mail server did not answer in time.")
    CLOSED = "closed", _("The mail server closed the connection.")
    REFUSED = "refused", _("The mail server refused the connection.")
    UNREACHABLE = "unreachable", _("The mail server could not be reached.")
    NOT_SENT = "not-sent", _("The email could not be sent.")
    BAD_ADDRESS = "bad-address", _("The email address cannot be used.")
    TOO_LONG = "too-long", _("Sending took too long; the mail server may be overloaded.")
    WORKER_LOST = "worker-lost", _("The worker stopped before it finished.")


class Outcome(StrEnum):
    """What happens after the failed attempt (said after its reason)."""

    RETRYING = "retrying"  # it will be tried again
    FINAL = "final"  # it could work later, but will not be tried again
    PERMANENT = "permanent"  # it would fail the same way
    GAVE_UP = "gave-up"  # its attempts are used up
    NONE = ""  # nothing more to say


@dataclass(frozen=True)
class Failure:
    """A failed attempt, as the row keeps it: a reason code and its data."""

    reason: str
    outcome: str = Outcome.NONE
    smtp_code: int | None = None  # the mail server's answer, kept as it sent it
    smtp_text: str = ""
    attempts: int | None = None  # with GAVE_UP

    def fields(self) -> dict[str, Any]:
        """The row's fields for a `retry` or `fail` move."""
        detail = {"outcome": str(self.outcome)}
        if self.smtp_code is not None:
            detail.update(smtp_code=self.smtp_code, smtp_text=self.smtp_text)
        if self.attempts is not None:
            detail["attempts"] = self.attempts
        return {"failure_reason": str(self.reason), "failure_detail": detail}

    @property
    def text(self) -> str:
        return failure_text(**self.fields())


def failure_text(failure_reason: str, failure_detail: dict[str, Any]) -> str:
    """The reason in words, in the active language, the server's answer verbatim in it."""
    reason, detail = failure_reason, failure_detail
    if not reason:
        return ""
    said = str(Reason(reason).label) if reason in Reason.values else reason
    if detail.get("smtp_code") is not None:
        text = detail.get("smtp_text", "")
        answer = f"{detail['smtp_code']} {text}".rstrip() + ("" if text.endswith(".") else ".")
        # Translators: a stage above, then the server's code and text as it sent them.
        said = gettext("%(stage)s: %(answer)s") % {"stage": said, "answer": answer}
    outcome = detail.get("outcome", Outcome.NONE)
    if outcome == Outcome.RETRYING:
        return gettext("%(reason)s This is temporary: it will be tried again.") % {"reason": said}
    if outcome == Outcome.FINAL:
        return gettext("%(reason)s It will not be tried again.") % {"reason": said}
    if outcome == Outcome.PERMANENT:
        return gettext("%(reason)s This is permanent: it will not be tried again.") % {
            "reason": said
        }
    if outcome == Outcome.GAVE_UP:
        attempts = detail.get("attempts", 0)
        gave_up = ngettext(
            "%(reason)s (gave up after %(attempts)d attempt)",
            "%(reason)s (gave up after %(attempts)d attempts)",
            attempts,
        )
        return gave_up % {"reason": said, "attempts": attempts}
    return said
