"""The state machine: the table in feedback/transitions.py, made by moves.feedback_move.

Every allowed move works; every other is refused and changes nothing (not the
row, not the version, no event, no publish). A move is published once its
transaction commits, never before, and never if it rolls back.
"""

import itertools
import threading
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.forms.models import model_to_dict
from django.utils import timezone

from feedback import delivery, moves, queue, selectors, transitions
from feedback.models import Feedback, FeedbackEvent, Status
from feedback.transitions import MOVES, NOW, MoveName
from tests.support.layer import LayerListener

# The one UPDATE a move makes is raw SQL: also run on PostgreSQL (make test).
pytestmark = pytest.mark.engines

# What each move's caller gives it (transitions.Move.takes), by field.
GIVEN = {
    "step": "connecting",
    "claimed_by": "worker@node-1",
    "progress": 42,
    "failure_reason": "closed",
    "failure_detail": {"outcome": "retrying"},
    "next_retry_at": timezone.now().replace(microsecond=0) + timedelta(minutes=5),
}

CASES = list(itertools.product(MOVES, Status))
ALLOWED = [(name, status) for name, status in CASES if status in MOVES[name].source]
REFUSED = [(name, status) for name, status in CASES if status not in MOVES[name].source]

# A refused move publishes nothing: how long a listener waits to be sure. A
# publish that happened would arrive in milliseconds.
QUIET = 0.5


def make(status: Status) -> Feedback:
    """A row in `status`, with every field a move may set holding something else."""
    return Feedback.objects.create(
        email="ada@example.com",
        message="Hi",
        status=status,
        attempts=2,
        progress=7,
        step="preparing",
        failure_reason="refused",
        failure_detail={"outcome": "final"},
        next_retry_at=timezone.now() - timedelta(minutes=1),
        version=3,
    )


def given(name: str) -> dict:
    return {field: GIVEN[field] for field in MOVES[name].takes}


def test_the_table_allows_these_moves():
    """The moves, written out once more here on purpose: a change to the table shows up."""
    allowed = {name: sorted(MOVES[name].source) for name in MOVES}
    assert allowed == {
        "claim": ["queued", "retrying", "sending"],
        "progress": ["sending"],
        "sent": ["sending"],
        "sent_on_receipt": ["queued", "retrying", "sending"],
        "retry": ["sending"],
        "fail": ["queued", "retrying", "sending"],
        "cancel": ["queued", "retrying"],
        "resend": ["failed"],
    }
    assert {name: move.target for name, move in MOVES.items()} == {
        "claim": "sending",
        "progress": "sending",
        "sent": "sent",
        "sent_on_receipt": "sent",
        "retry": "retrying",
        "fail": "failed",
        "cancel": "cancelled",
        "resend": "queued",
    }


def test_what_is_read_from_the_table():
    final, waiting = transitions.FINAL, transitions.WAITING
    assert final == {Status.SENT, Status.FAILED, Status.CANCELLED}
    assert waiting == {Status.QUEUED, Status.RETRYING}
    assert transitions.HELD == Status.SENDING
    in_line, taken_back, gave_up = transitions.IN_LINE, transitions.TAKEN_BACK, transitions.GAVE_UP
    assert in_line == {Status.QUEUED}
    assert transitions.GOAL == Status.SENT
    assert taken_back == {Status.CANCELLED}
    assert gave_up == {Status.FAILED}
    changing_the_line = {name for name, move in MOVES.items() if move.changes_line}
    assert changing_the_line == {"claim", "sent_on_receipt", "fail", "cancel", "resend"}
    assert transitions.ahead(Status.QUEUED) == [Status.SENDING, Status.SENT]
    assert transitions.ahead(Status.RETRYING) == [Status.SENDING, Status.SENT]
    assert transitions.ahead(Status.SENDING) == [Status.SENT]
    assert transitions.ahead(Status.SENT) == []
    assert transitions.ahead(Status.FAILED) == []
    assert transitions.ahead(Status.CANCELLED) == []


def test_every_status_is_reached_and_every_status_but_a_final_one_is_left():
    targets = {move.target for move in MOVES.values()}
    assert set(Status) - targets == set()
    for status in set(Status) - transitions.FINAL:
        assert transitions.ahead(status), f"{status} has no way forward"


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "status"), ALLOWED)
def test_an_allowed_move_changes_the_row_records_and_publishes_once(
    name, status, django_capture_on_commit_callbacks
):
    move = MOVES[name]
    feedback = make(status)
    events = FeedbackEvent.objects.filter(feedback=feedback)
    listener = LayerListener(selectors.status_group(feedback.pk))

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        moved = moves.feedback_move(name, feedback_id=feedback.pk, **given(name))

    assert moved is not None
    stored = Feedback.objects.get(pk=feedback.pk)
    assert stored.status == move.target
    assert stored.version == 4
    for field, value in {**move.sets, **given(name)}.items():
        if value is NOW:
            assert stored.updated_at == getattr(stored, field)
        elif value is transitions.ONE_MORE:
            assert stored.attempts == 3
        else:
            assert getattr(stored, field) == value, field
    recorded = [event.status for event in events]
    assert recorded == ([move.target] if move.records_event else [])

    # Its status, and when it may leave or enter the line, one queue-wide event (feedback/queue.py).
    assert len(callbacks) == 1 + move.changes_line
    update = listener.receive(timeout=10)
    assert update["version"] == 4
    assert f'data-status="{move.target}"' in update["html"]["en"]
    assert update["final"] is transitions.is_final(move.target)
    with pytest.raises(TimeoutError):
        listener.receive(timeout=QUIET)  # once


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "status"), REFUSED)
def test_any_other_move_is_refused_and_changes_nothing(
    name, status, django_capture_on_commit_callbacks
):
    feedback = make(status)
    before = model_to_dict(Feedback.objects.get(pk=feedback.pk))
    updated_at = Feedback.objects.get(pk=feedback.pk).updated_at
    listener = LayerListener(selectors.status_group(feedback.pk))

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        moved = moves.feedback_move(name, feedback_id=feedback.pk, **given(name))

    assert moved is None
    stored = Feedback.objects.get(pk=feedback.pk)
    assert model_to_dict(stored) == before  # the status, the version and every other field
    assert stored.updated_at == updated_at
    assert not FeedbackEvent.objects.filter(feedback=feedback).exists()
    assert callbacks == []
    with pytest.raises(TimeoutError):
        listener.receive(timeout=QUIET)


@pytest.mark.django_db
def test_a_resend_re_enters_the_line_so_the_line_is_told(django_capture_on_commit_callbacks):
    failed = make(Status.FAILED)
    with django_capture_on_commit_callbacks() as callbacks:
        assert moves.feedback_move(MoveName.RESEND, feedback_id=failed.pk) is not None
    assert queue.feedback_queue_changed in callbacks


@pytest.mark.django_db
def test_a_condition_of_the_caller_can_refuse_a_move_too():
    feedback = make(Status.SENDING)
    stale = transitions.unchanged(version=2)
    assert moves.feedback_move(MoveName.SENT, feedback_id=feedback.pk, where=stale) is None
    assert Feedback.objects.get(pk=feedback.pk).status == Status.SENDING


@pytest.mark.django_db
def test_a_move_given_the_wrong_values_is_a_programming_error():
    feedback = make(Status.SENDING)
    with pytest.raises(moves.MoveError):
        moves.feedback_move(MoveName.RETRY, feedback_id=feedback.pk, failure_reason="No time.")
    with pytest.raises(moves.MoveError):
        moves.feedback_move(MoveName.SENT, feedback_id=feedback.pk, step="Sneaked in")
    assert Feedback.objects.get(pk=feedback.pk).version == 3


@pytest.mark.postgres_only  # SQLite lets one writer in at a time: no two moves overlap
@pytest.mark.django_db(transaction=True)
def test_a_claim_waiting_for_another_is_checked_again_against_the_row_it_left():
    """READ COMMITTED: a second claim blocked by the first sees, once the first commits,
    a row no longer claimable (`sending`, its lease fresh), and claims nothing."""
    feedback = Feedback.objects.create(email="ada@example.com", message="Hi")
    first_claimed, release = threading.Event(), threading.Event()
    second: list[Feedback | None] = []

    def claim_and_hold() -> None:
        with transaction.atomic():
            assert delivery.feedback_claim(feedback_id=feedback.pk) is not None
            first_claimed.set()
            release.wait(30)
        connections.close_all()

    def claim_after() -> None:
        first_claimed.wait(30)
        second.append(delivery.feedback_claim(feedback_id=feedback.pk))
        connections.close_all()

    threads = [threading.Thread(target=claim_and_hold), threading.Thread(target=claim_after)]
    for thread in threads:
        thread.start()
    with connection.cursor() as cursor:  # until the second claim waits for the first's lock
        while not release.is_set():
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE%%'"
            )
            if cursor.fetchone()[0]:
                release.set()
    for thread in threads:
        thread.join(30)
    assert second == [None]
    stored = Feedback.objects.get(pk=feedback.pk)
    assert (stored.status, stored.attempts, stored.version) == ("sending", 1, 1)


# -- Published after commit ---------------------------------------------------------


class RolledBack(Exception):
    pass


@pytest.mark.django_db(transaction=True)
def test_a_move_in_a_transaction_that_rolls_back_publishes_nothing():
    feedback = Feedback.objects.create(email="ada@example.com", message="Hi")
    listener = LayerListener(selectors.status_group(feedback.pk))
    with pytest.raises(RolledBack), transaction.atomic():
        assert delivery.feedback_claim(feedback_id=feedback.pk) is not None
        raise RolledBack
    with pytest.raises(TimeoutError):
        listener.receive(timeout=2 * QUIET)
    stored = Feedback.objects.get(pk=feedback.pk)
    assert (stored.status, stored.version, stored.attempts) == ("queued", 0, 0)
    assert not stored.events.exists()


@pytest.mark.django_db(transaction=True)
def test_a_move_in_a_transaction_that_commits_publishes_once_after_the_commit():
    failed = Feedback.objects.create(
        email="ada@example.com", message="Hi", status=Status.FAILED, failure_reason="No."
    )
    listener = LayerListener(selectors.status_group(failed.pk))
    with transaction.atomic():
        assert moves.feedback_move(MoveName.RESEND, feedback_id=failed.pk) is not None
        with pytest.raises(TimeoutError):
            listener.receive(timeout=QUIET)  # not yet: nothing is committed
    update = listener.receive(timeout=10)
    assert update["version"] == 1
    assert 'data-status="queued"' in update["html"]["en"]
    with pytest.raises(TimeoutError):
        listener.receive(timeout=QUIET)  # once
