"""The life of a feedback: the table of every allowed status change.

Each move says which statuses it may leave, the status it arrives in, what it
sets on the row and which values its caller must give. `moves.feedback_move`
is the one function that performs a move. Final statuses, the line, what lies
ahead on the timeline and which rows the claim and the sweeper may take are
read from this table, never restated: a new status is a member of
`models.Status` (its label), the moves into and out of it here, and its words
in the status partial.

The table is data and imports only the model, so the reads (selectors, the
timeline) can use it while the writer (services) renders through them.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from .models import Status

NOW = object()  # in `sets`: the time of the move
ONE_MORE = object()  # in `sets`: the field's value on the row, plus one

# Waiting its turn in the line: what the queue counts (a place, the queue-wide
# event) and what Undo may take back while its window lasts. `retrying` waits
# too, but for its own retry time, not in the line.
IN_LINE = frozenset({Status.QUEUED})


class MoveName(StrEnum):
    CLAIM = "claim"
    PROGRESS = "progress"
    SENT = "sent"
    SENT_ON_RECEIPT = "sent_on_receipt"
    RETRY = "retry"
    FAIL = "fail"
    CANCEL = "cancel"
    RESEND = "resend"


@dataclass(frozen=True)
class Move:
    """One allowed move; `sets` may use NOW for the time of the move."""

    source: frozenset[Status]
    target: Status
    sets: Mapping[str, Any] = field(default_factory=dict)
    takes: tuple[str, ...] = ()  # fields the caller gives (a reason, a time)
    # Part of the way to a sent email when all goes well (the timeline's "next" steps).
    forward: bool = False
    # Made by a person (the admin, the submitter), never by the app on its own:
    # a status only such moves leave is still final.
    by_hand: bool = False
    # False for a step inside one status (progress): the timeline shows statuses.
    records_event: bool = True

    @property
    def changes_line(self) -> bool:
        """It may take a row out of the line or put one in (IN_LINE)."""
        return bool(self.source & IN_LINE) or self.target in IN_LINE


# What arriving at `sent` sets, by whichever move.
SENT_SETS = {
    "progress": 100,
    "step": "",
    "failure_reason": "",
    "failure_detail": {},
    "next_retry_at": None,
    "sent_at": NOW,
}

MOVES: dict[MoveName, Move] = {
    # A delivery takes a waiting row, or a `sending` one whose lease ran out
    # (its worker died): see claimable(). It notes who claimed (a worker node).
    MoveName.CLAIM: Move(
        source=frozenset({Status.QUEUED, Status.RETRYING, Status.SENDING}),
        target=Status.SENDING,
        sets={
            "attempts": ONE_MORE,
            "progress": 0,
            "next_retry_at": None,
            "claimed_at": NOW,
        },
        takes=("step", "claimed_by"),
        forward=True,
    ),
    MoveName.PROGRESS: Move(
        source=frozenset({Status.SENDING}),
        target=Status.SENDING,
        takes=("step", "progress"),
        records_event=False,
    ),
    MoveName.SENT: Move(
        source=frozenset({Status.SENDING}),
        target=Status.SENT,
        sets=SENT_SETS,
        forward=True,
    ),
    # The mail server accepted it (a receipt, feedback/receipts.py) but `sent` was not
    # recorded by its sender: whatever the row became meanwhile, it is sent, never again.
    MoveName.SENT_ON_RECEIPT: Move(
        source=frozenset({Status.QUEUED, Status.RETRYING, Status.SENDING}),
        target=Status.SENT,
        sets=SENT_SETS,
    ),
    MoveName.RETRY: Move(
        source=frozenset({Status.SENDING}),
        target=Status.RETRYING,
        sets={"step": "", "progress": 0},
        takes=("failure_reason", "failure_detail", "next_retry_at"),
    ),
    MoveName.FAIL: Move(
        source=frozenset({Status.QUEUED, Status.SENDING, Status.RETRYING}),
        target=Status.FAILED,
        sets={"step": "", "next_retry_at": None},
        takes=("failure_reason", "failure_detail"),
    ),
    # The submitter takes it back: Undo while it waits its turn, "Stop trying"
    # between two attempts. Never from `sending`: once claimed, it is too late.
    MoveName.CANCEL: Move(
        source=frozenset({Status.QUEUED, Status.RETRYING}),
        target=Status.CANCELLED,
        sets={"step": "", "next_retry_at": None},
        by_hand=True,
    ),
    MoveName.RESEND: Move(
        source=frozenset({Status.FAILED}),
        target=Status.QUEUED,
        sets={
            "attempts": 0,
            "progress": 0,
            "step": "",
            "failure_reason": "",
            "failure_detail": {},
            "next_retry_at": None,
        },
        by_hand=True,
    ),
}

# -- Read from the table ---------------------------------------------------------

# Statuses the app leaves on its own (a step inside a status does not count).
_LEFT_BY_ITSELF = frozenset(
    status
    for each in MOVES.values()
    if not each.by_hand
    for status in each.source
    if status != each.target
)
FINAL = frozenset(Status) - _LEFT_BY_ITSELF
# Where the way forward ends: the email is sent.
GOAL = next(m.target for m in MOVES.values() if m.forward and m.target in FINAL)
# The other ends: taken back by a person, or given up by the app.
TAKEN_BACK = FINAL & {m.target for m in MOVES.values() if m.by_hand}
GAVE_UP = FINAL - {GOAL} - TAKEN_BACK

# A claimed row is held by its sender: the claim's target. The rows a claim
# may take without a lease running out are the other statuses it leaves.
HELD = MOVES[MoveName.CLAIM].target
WAITING = MOVES[MoveName.CLAIM].source - {HELD}


def is_final(status: str) -> bool:
    return status in FINAL


def ahead(status: str) -> list[Status]:
    """The statuses still to come when all goes well, in order."""
    steps: list[Status] = []
    current = Status(status)
    while True:
        following = next(
            (
                m.target
                for m in MOVES.values()
                if m.forward and current in m.source and m.target != current
            ),
            None,
        )
        if following is None or following in steps:
            return steps
        steps.append(following)
        current = following


@dataclass(frozen=True)
class Where:
    """A caller's condition on the row a move takes, besides its source statuses: `sql`
    over the row's columns, with one %s for each of `values`, (field name, value) pairs
    whose value is converted as that field's."""

    sql: str
    values: tuple[tuple[str, Any], ...] = ()


def claimable(*, lease_ended_before: datetime, now: datetime) -> Where:
    """Rows a claim may take: waiting ones past their undo window, and held
    ones whose lease ran out."""
    waiting = sorted(WAITING)
    return Where(
        f"(status IN ({', '.join(['%s'] * len(waiting))})"
        " AND (undo_until IS NULL OR undo_until <= %s))"
        " OR (status = %s AND updated_at < %s)",
        (
            *(("status", status) for status in waiting),
            ("undo_until", now),
            ("status", HELD),
            ("updated_at", lease_ended_before),
        ),
    )


def unchanged(*, version: int) -> Where:
    """The row as it was read: no move was made on it since."""
    return Where("version = %s", (("version", version),))
