from django import forms

from .models import Feedback

MESSAGE_MAX_LENGTH = 2000


class FeedbackForm(forms.ModelForm):
    message = forms.CharField(
        max_length=MESSAGE_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 5, "maxlength": MESSAGE_MAX_LENGTH}),
    )

    class Meta:
        model = Feedback
        fields = ["email", "message"]
        widgets = {"email": forms.EmailInput(attrs={"autocomplete": "email"})}
