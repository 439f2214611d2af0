"""A row's step and failure reason become codes and data (feedback/wording.py), said at render.

Rows written before kept them as text in their submitter's language (English or
Brazilian Portuguese): each is read back into its code, with the server's answer (code and
text) and what came after (tried again, given up). Text it does not know becomes the
generic reason ("The email could not be sent.").
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
# The stage a server's answer came at ("<stage>: <code> <text>.").
STAGES = {
    "The mail server refused the connection": "smtp-connect",
    "O servidor de e-mail recusou a conexão": "smtp-connect",
    "The mail server refused our greeting (EHLO)": "smtp-helo",
    "O servidor de e-mail recusou nossa saudação (EHLO)": "smtp-helo",
    "The mail server refused the sender address": "smtp-sender",
    "O servidor de e-mail recusou o endereço do remetente": "smtp-sender",
    "The mail server refused the recipient address": "smtp-recipient",
    "O servidor de e-mail recusou o endereço do destinatário": "smtp-recipient",
    "The mail server refused the message": "smtp-data",
    "O servidor de e-mail recusou a mensagem": "smtp-data",
    "The mail server did not accept our credentials": "smtp-auth",
    "O servidor de e-mail não aceitou nossas credenciais": "smtp-auth",
}
# Reasons without a server's answer.
PLAIN = {
    "The address has non-ASCII characters before the @, and the mail server does not accept "
    "such addresses (no SMTPUTF8).": "no-smtputf8",
    "O endereço tem caracteres não ASCII antes do @, e o servidor de e-mail não aceita esse "
    "tipo de endereço (sem SMTPUTF8).": "no-smtputf8",
    "The mail server did not answer in time.": "timed-out",
    "O servidor de e-mail não respondeu a tempo.": "timed-out",
    "The mail server closed the connection.": "closed",
    "O servidor de e-mail fechou a conexão.": "closed",
    "The mail server refused the connection.": "refused",
    "O servidor de e-mail recusou a conexão.": "refused",
    "The mail server could not be reached.": "unreachable",
    "Não foi possível falar com o servidor de e-mail.": "unreachable",
    "The email address cannot be used.": "bad-address",
    "Este endereço de e-mail não pode ser usado.": "bad-address",
    "Sending took too long; the mail server may be overloaded.": "too-long",
    "O envio demorou demais; o servidor de e-mail pode estar sobrecarregado.": "too-long",
    "The worker stopped before it finished.": "worker-lost",
    "O worker parou antes de terminar.": "worker-lost",
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
    said = text[:cut].strip()
    answer = ANSWER.search(said)
    if answer is None:
        return PLAIN.get(said, "not-sent"), detail
    detail.update(smtp_code=int(answer.group(1)), smtp_text=answer.group(2) or "")
    return STAGES.get(said[: answer.start()], "smtp-answer"), detail


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
