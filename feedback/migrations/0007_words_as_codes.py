"""A row's step and failure reason become codes and data (feedback/wording.py), said at render.

Rows written before kept them as text in their submitter's language (English or
Brazilian Portuguese): each is read back into a code. A reason's own words go
(a generic one stands in), its server answer (code and text) and what came after
(tried again, given up) stay.
"""

import re

from django.db import migrations, models

# Texts as they were stored, in either language, and the code each becomes.
STEPS = {
    "Preparing your confirmation": "preparing",
    "Preparando sua confirmação": "preparing",
    "Connecting to the mail server": "connecting",
    "Conectando ao servidor de e-mail": "connecting",
    "Handing the message over": "handing-over",
    "Entregando a mensagem": "handing-over",
}
REASONS = {
    "The worker stopped before it finished.": "worker-lost",
    "O worker parou antes de terminar.": "worker-lost",
    "Sending took too long": "too-long",
    "O envio demorou demais": "too-long",
}
OUTCOMES = [
    (re.compile(r" (This is temporary|É temporário)"), "retrying"),
    (re.compile(r" (It will not|Não vamos) "), "final"),
    (re.compile(r" (This is permanent|É definitivo)"), "permanent"),
    (re.compile(r" \((gave up after|desistimos depois de) (\d+)"), "gave-up"),
]
# "<stage>: 451 4.3.0 Try again later." (the server's code and text, as it sent them)
ANSWER = re.compile(r": ([2-5]\d\d)(?: (.*?))?\.(?= \S|$)")


def as_codes(text: str) -> tuple[str, dict]:
    detail: dict = {"outcome": ""}
    cut = len(text)
    for pattern, outcome in OUTCOMES:
        found = pattern.search(text)
        if found:
            detail["outcome"], cut = outcome, found.start()
            if outcome == "gave-up":
                detail["attempts"] = int(found.group(2))
            break
    said = text[:cut]
    reason = next((code for words, code in REASONS.items() if said.startswith(words)), "")
    answer = ANSWER.search(said)
    if not reason and answer:
        reason = "smtp-answer"
        detail.update(smtp_code=int(answer.group(1)), smtp_text=answer.group(2) or "")
    return reason or "not-sent", detail


def words_to_codes(apps, schema_editor):
    Feedback = apps.get_model("feedback", "Feedback")
    for row in Feedback.objects.exclude(step="", failure_reason="").iterator():
        row.step = STEPS.get(row.step, "")
        if row.failure_reason:
            row.failure_reason, row.failure_detail = as_codes(row.failure_reason)
        row.save(update_fields=["step", "failure_reason", "failure_detail"])


class Migration(migrations.Migration):
    dependencies = [
        ("feedback", "0006_queue_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="feedback",
            name="failure_detail",
            field=models.JSONField(blank=True, default=dict, verbose_name="failure detail"),
        ),
        migrations.RunPython(words_to_codes, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="feedback",
            name="step",
            field=models.CharField(
                blank=True,
                choices=[
                    ("preparing", "Preparing your confirmation"),
                    ("connecting", "Connecting to the mail server"),
                    ("handing-over", "Handing the message over"),
                ],
                max_length=32,
                verbose_name="step",
            ),
        ),
        migrations.AlterField(
            model_name="feedback",
            name="failure_reason",
            field=models.CharField(
                blank=True,
                choices=[
                    ("smtp-connect", "The mail server refused the connection"),
                    ("smtp-helo", "The mail server refused our greeting (EHLO)"),
                    ("smtp-sender", "The mail server refused the sender address"),
                    ("smtp-recipient", "The mail server refused the recipient address"),
                    ("smtp-data", "The mail server refused the message"),
                    ("smtp-auth", "The mail server did not accept our credentials"),
                    ("smtp-answer", "The mail server answered"),
                    (
                        "no-smtputf8",
                        "The address has non-ASCII characters before the @, and the mail "
                        "server does not accept such addresses (no SMTPUTF8).",
                    ),
                    ("timed-out", "The mail server did not answer in time."),
                    ("closed", "The mail server closed the connection."),
                    ("refused", "The mail server refused the connection."),
                    ("unreachable", "The mail server could not be reached."),
                    ("not-sent", "The email could not be sent."),
                    ("bad-address", "The email address cannot be used."),
                    (
                        "too-long",
                        "Sending took too long; the mail server may be overloaded.",
                    ),
                    ("worker-lost", "The worker stopped before it finished."),
                ],
                max_length=32,
                verbose_name="failure reason",
            ),
        ),
    ]
