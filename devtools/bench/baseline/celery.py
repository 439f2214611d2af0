import os

from celery import Celery, shared_task
from django.core.mail import send_mail

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "devtools.bench.baseline.settings")

app = Celery("baseline")
app.config_from_object("django.conf:settings", namespace="CELERY")


@shared_task
def send_feedback_email_task(email_address: str, message: str) -> None:
    send_mail("Your Feedback", f"\t{message}\n\nThank you!", "support@example.com",
              [email_address], fail_silently=False)  # fmt: skip
