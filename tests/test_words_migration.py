"""Migration 0007: the words rows stored in their submitter's language become codes and data."""

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import translation

from feedback.models import Feedback

# The migration runs on both databases: their JSON and ALTER TABLE differ.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engines]

BEFORE = ("feedback", "0006_queue_indexes")

# (status, step, failure_reason) as stored before, and (step, reason, detail) after.
ROWS = [
    ("sending", "Conectando ao servidor de e-mail", "", ("connecting", "", {})),
    ("sending", "Handing the message over", "", ("handing-over", "", {})),
    (
        "retrying",
        "",
        "O servidor de e-mail recusou a mensagem: 451 4.3.0 Try again later. "
        "É temporário: vamos tentar de novo.",
        (
            "",
            "smtp-data",
            {"outcome": "retrying", "smtp_code": 451, "smtp_text": "4.3.0 Try again later"},
        ),
    ),  # fmt: skip
    (
        "failed",
        "",
        "Sending took too long; the mail server may be overloaded. (gave up after 2 attempts)",
        ("", "too-long", {"outcome": "gave-up", "attempts": 2}),
    ),
    ("retrying", "", "O worker parou antes de terminar.", ("", "worker-lost", {"outcome": ""})),
    (
        "failed",
        "",
        "The mail server refused the connection. It will not be tried again.",
        ("", "refused", {"outcome": "final"}),
    ),
    ("failed", "", "Something else entirely.", ("", "not-sent", {"outcome": ""})),
]


def test_stored_words_become_codes_each_reader_reads_in_their_language():
    call_command("migrate", *BEFORE, verbosity=0)
    old = MigrationExecutor(connection).loader.project_state(BEFORE).apps
    Old = old.get_model("feedback", "Feedback")
    ids = [
        Old.objects.create(
            email="ana@example.com", message="Oi", language="pt-br", status=status,
            step=step, failure_reason=reason,
        ).pk
        for status, step, reason, _ in ROWS
    ]  # fmt: skip
    call_command("migrate", "feedback", verbosity=0)

    rows = Feedback.objects.in_bulk(ids)
    after = [(rows[pk].step, rows[pk].failure_reason, rows[pk].failure_detail) for pk in ids]
    assert after == [expected for *_, expected in ROWS]
    retrying = rows[ids[2]]
    with translation.override("en"):
        assert retrying.failure_text == (
            "The mail server refused the message: 451 4.3.0 Try again later. "
            "This is temporary: it will be tried again."
        )
    with translation.override("pt-br"):
        assert retrying.failure_text == ROWS[2][2]
        assert rows[ids[3]].failure_text == (
            "O envio demorou demais; o servidor de e-mail pode estar sobrecarregado. "
            "(desistimos depois de 2 tentativas)"
        )
