import unicodedata

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator, MaxLengthValidator
from django.utils.translation import gettext_lazy as _

from .models import SendMode
from .smtp import domain_to_ascii

MESSAGE_MAX_LENGTH = 2000

# Line breaks in a message are fine; other control characters (and lone
# surrogates, which no UTF-8 text can carry) are not. Format characters such
# as the zero-width joiner inside emoji stay allowed.
MESSAGE_ALLOWED_CONTROLS = frozenset("\t\n\r")


# Django's validator checks the ASCII form: local parts of ASCII atext, and
# domains after IDNA. Non-ASCII letters before the @ (RFC 6531) are checked
# here and stood in for by "a"; the domain goes through IDNA 2008 first.
ascii_email_validator = EmailValidator()


def validate_international_email(value: str) -> None:
    """An address whose local part may be non-ASCII (RFC 6531), and whose domain IDNA 2008 takes."""
    local, at, domain = value.rpartition("@")
    invalid = ValidationError(_("Enter a valid email address."), code="invalid")
    if not at or not local or not domain:
        raise invalid
    if any(not char.isascii() and unicodedata.category(char)[0] in "CZ" for char in local):
        raise invalid
    try:
        ascii_domain = domain_to_ascii(domain)
    except UnicodeError:
        raise ValidationError(
            _("The domain after the @ cannot be used in an email address (IDNA 2008)."),
            code="invalid_domain",
        ) from None
    stand_in = "".join(char if char.isascii() else "a" for char in local)
    ascii_email_validator(f"{stand_in}@{ascii_domain}")


class HeaderSafeEmailField(forms.EmailField):
    """An address that goes into the email's To header and the SMTP envelope.

    Checked before EmailField strips whitespace, so "ada@example.com\\r\\nBcc: ..."
    or a trailing line break is an error, not silently trimmed into a valid address.
    """

    def to_python(self, value):
        if isinstance(value, str) and any(
            unicodedata.category(char) in {"Cc", "Cf", "Cs", "Zl", "Zp"} for char in value
        ):
            raise ValidationError(
                _("An email address cannot contain line breaks or control characters."),
                code="control_characters",
            )
        return super().to_python(value)

    default_validators = [validate_international_email]


def validate_message_characters(value: str) -> None:
    if any(
        unicodedata.category(char) in {"Cc", "Cs"} and char not in MESSAGE_ALLOWED_CONTROLS
        for char in value
    ):
        raise ValidationError(
            _("The message contains control characters; please remove them."),
            code="control_characters",
        )


class BrowserMaxLengthValidator(MaxLengthValidator):
    """The length as the textarea's maxlength counts it: a line break is one character.

    A browser submits each line break as CRLF, so 2,000 characters with ten
    line breaks arrive as 2,010: what the textarea allowed must be accepted.
    """

    def clean(self, x: str) -> int:
        return len(x.replace("\r\n", "\n"))


class FeedbackForm(forms.Form):
    """What a submission sends; feedback_submit stores it (a plain form: it saves no row)."""

    email = HeaderSafeEmailField(
        label=_("Your email address"),
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )
    message = forms.CharField(
        label=_("Message"),
        validators=[BrowserMaxLengthValidator(MESSAGE_MAX_LENGTH), validate_message_characters],
        widget=forms.Textarea(attrs={"rows": 5, "maxlength": MESSAGE_MAX_LENGTH}),
    )

    # Which submit button was pressed; a plain POST without it goes through Celery.
    mode = forms.TypedChoiceField(
        choices=SendMode.choices, required=False, empty_value=SendMode.ASYNC
    )
