from django import forms

from .models import Feedback
from .services import SendMode

MESSAGE_MAX_LENGTH = 2000


class FeedbackForm(forms.ModelForm):
    message = forms.CharField(
        max_length=MESSAGE_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 5, "maxlength": MESSAGE_MAX_LENGTH}),
    )

    # Which submit button was pressed; a plain POST without it goes through Celery.
    mode = forms.TypedChoiceField(
        choices=SendMode.choices, required=False, empty_value=SendMode.ASYNC
    )

    class Meta:
        model = Feedback
        fields = ["email", "message"]
        widgets = {"email": forms.EmailInput(attrs={"autocomplete": "email"})}
