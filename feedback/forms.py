import unicodedata

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator

from .models import Feedback, SendMode

MESSAGE_MAX_LENGTH = 2000

# Line breaks in a message are fine; other control characters (and lone
# surrogates, which no UTF-8 text can carry) are not. Format characters such
# as the zero-width joiner inside emoji stay allowed.
MESSAGE_ALLOWED_CONTROLS = frozenset("\t\n\r")


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
                "An email address cannot contain line breaks or control characters.",
                code="control_characters",
            )
        return super().to_python(value)


def validate_message_characters(value: str) -> None:
    if any(
        unicodedata.category(char) in {"Cc", "Cs"} and char not in MESSAGE_ALLOWED_CONTROLS
        for char in value
    ):
        raise ValidationError(
            "The message contains control characters; please remove them.",
            code="control_characters",
        )


class BrowserMaxLengthValidator(MaxLengthValidator):
    """The length as the textarea's maxlength counts it: a line break is one character.

    A browser submits each line break as CRLF, so 2,000 characters with ten
    line breaks arrive as 2,010: what the textarea allowed must be accepted.
    """

    def clean(self, x: str) -> int:
        return len(x.replace("\r\n", "\n"))


class FeedbackForm(forms.ModelForm):
    email = HeaderSafeEmailField(
        max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email"})
    )
    message = forms.CharField(
        validators=[BrowserMaxLengthValidator(MESSAGE_MAX_LENGTH), validate_message_characters],
        widget=forms.Textarea(attrs={"rows": 5, "maxlength": MESSAGE_MAX_LENGTH}),
    )

    # Which submit button was pressed; a plain POST without it goes through Celery.
    mode = forms.TypedChoiceField(
        choices=SendMode.choices, required=False, empty_value=SendMode.ASYNC
    )

    class Meta:
        model = Feedback
        fields = ["email", "message"]
