"""The admin's bulk jobs, on the live-task API: resend the selected feedback, export them as CSV.

Each runs on a worker as one live task: it reports every step (done of total), stops at a
Cancel between two steps, and ends in a final state. The admin starts it and shows its card;
how a job is watched is the live-task API's business, not this module's.
"""

import csv
import time
from collections.abc import Iterator
from datetime import datetime
from itertools import batched

from django.conf import settings
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _

from livetasks import TaskContext, live_task

from . import services
from .models import Feedback

# Rows per step: a Cancel is seen, and the bar moves, at least this often.
RESEND_ROWS_PER_STEP = 10
EXPORT_ROWS_PER_STEP = 500

# The steps a card shows (stored as the msgid, read in each reader's language).
RESENDING = _("Resending")
WRITING = _("Writing rows")

# The export's columns, in order: the model's fields, headed by their verbose names.
EXPORT_FIELDS = (
    "id",
    "email",
    "status",
    "language",
    "attempts",
    "failure_reason",
    "created_at",
    "sent_at",
    "message",
)

# A spreadsheet runs a cell that starts with one of these as a formula (OWASP's list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    """A value as a CSV cell that no spreadsheet takes for a formula: such a cell gets a `'`."""
    if value is None:
        return ""
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def export_header() -> list[str]:
    """The header row, in the active language."""
    return [csv_cell(Feedback._meta.get_field(name).verbose_name) for name in EXPORT_FIELDS]


def export_rows(ids: list[str]) -> Iterator[tuple]:
    """The selected rows, streamed: one chunk in memory at a time, never the whole selection."""
    for chunk in batched(ids, EXPORT_ROWS_PER_STEP):
        rows = (
            Feedback.objects.filter(pk__in=chunk)
            .order_by("created_at", "pk")
            .values_list(*EXPORT_FIELDS)
        )
        yield from rows.iterator(chunk_size=EXPORT_ROWS_PER_STEP)


class Pace:
    """At most `FEEDBACK_JOB_ROWS_PER_SECOND` rows a second (0: no bound), so that a big job
    leaves the database to the sends it shares with them."""

    def __init__(self) -> None:
        self.rate = settings.FEEDBACK_JOB_ROWS_PER_SECOND
        self.started = time.monotonic()

    def wait(self, done: int) -> None:
        if self.rate > 0:
            time.sleep(max(0.0, self.started + done / self.rate - time.monotonic()))


@live_task(cancellable=True, result_template="admin/feedback/feedback/resent.html")
def feedback_resend_selected(context: TaskContext, ids: list[str]) -> dict[str, int]:
    """Resend each of these feedback through the services: a row no longer failed (sent or
    deleted since the click) is left alone. Returns how many were resent and left."""
    total, done, resent, pace = len(ids), 0, 0, Pace()
    context.progress(done=0, total=total, step=RESENDING)
    for chunk in batched(ids, RESEND_ROWS_PER_STEP):
        resent += sum(services.feedback_resend(feedback_id=pk) for pk in chunk)
        done += len(chunk)
        pace.wait(done)
        context.progress(done=done, total=total, step=RESENDING)
    return {"resent": resent, "skipped": total - resent}


@live_task(cancellable=True)
def feedback_export_csv(context: TaskContext, ids: list[str], language: str) -> None:
    """Write these feedback to a CSV file, one row each, streamed from the database; its
    header in `language` (the asker's).

    Each cell that a spreadsheet would run as a formula is escaped (`csv_cell`). Cancelled,
    the file is dropped by the API: nothing half-written is offered.
    """
    total, pace = len(ids), Pace()
    name = f"feedback-{timezone.now():%Y%m%d-%H%M%S}.csv"
    with context.output(name, content_type="text/csv") as out:
        context.progress(done=0, total=total, step=WRITING)
        writer = csv.writer(out)
        out.write("\ufeff")  # the BOM: spreadsheets then read the file as UTF-8
        with translation.override(language):
            writer.writerow(export_header())
        for done, row in enumerate(export_rows(ids), start=1):
            writer.writerow([csv_cell(value) for value in row])
            if done % EXPORT_ROWS_PER_STEP == 0:
                pace.wait(done)
                context.progress(done=done, total=total, step=WRITING)
