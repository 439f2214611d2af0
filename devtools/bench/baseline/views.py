from django import forms
from django.urls import path
from django.views.generic import FormView, TemplateView

from .celery import send_feedback_email_task


class FeedbackForm(forms.Form):
    email = forms.EmailField(label="Email Address")
    message = forms.CharField(label="Message", widget=forms.Textarea(attrs={"rows": 5}))

    def send_email(self) -> None:
        send_feedback_email_task.delay(self.cleaned_data["email"], self.cleaned_data["message"])


class FeedbackFormView(FormView):
    template_name = "feedback.html"
    form_class = FeedbackForm
    success_url = "/success/"

    def form_valid(self, form):
        form.send_email()
        return super().form_valid(form)


urlpatterns = [
    path("", FeedbackFormView.as_view(), name="feedback"),
    path("success/", TemplateView.as_view(template_name="success.html"), name="success"),
]
