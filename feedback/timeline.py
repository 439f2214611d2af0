"""A feedback's timeline: the steps it went through, each with its time since submit."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils.formats import number_format
from django.utils.translation import gettext, pgettext

from .models import Feedback, Status
from .transitions import GAVE_UP, TAKEN_BACK, ahead, is_final


@dataclass(frozen=True)
class TimelineStep:
    """Its words are read when the partial renders, in the language it renders in."""

    status: str
    state: str  # "done", "current" or "next"
    offset: timedelta | None = None  # since submit; None for a step still ahead

    @property
    def label(self) -> str:
        return Status(self.status).label

    @property
    def since_submit(self) -> str:
        return "" if self.offset is None else format_offset(self.offset)

    @property
    def state_label(self) -> str:
        # Said in words too: colour is never the only signal.
        if self.status in GAVE_UP:
            return pgettext("timeline", "gave up")
        if self.status in TAKEN_BACK:
            return pgettext("timeline", "taken back")
        if self.state == "done":  # one lookup, not one per state: it runs for every step shown
            return pgettext("timeline", "done")
        if self.state == "current":
            return pgettext("timeline", "now")
        return pgettext("timeline", "next")


def format_offset(offset: timedelta) -> str:
    """ "+12 ms", "+3.01 s" ("+3,01 s" in Portuguese)."""
    ms = max(0, round(offset.total_seconds() * 1000))
    if ms < 1000:
        return gettext("+%(ms)s ms") % {"ms": ms}
    return gettext("+%(seconds)s s") % {"seconds": number_format(ms / 1000, decimal_pos=2)}


# A recorded step: a FeedbackEvent's (status, at).
Recorded = tuple[str, datetime]


@dataclass(frozen=True)
class KnownEvents:
    """A row's events at its `version`, carried by the row a move returned (`known_events`)."""

    version: int
    events: tuple[Recorded, ...]


def recorded_steps(*, feedback: Feedback) -> Sequence[Recorded]:
    """The row's events as (status, at), oldest first: those a move carried on the row it
    returned (see known_after_move) while the row is still that version, else read."""
    known = getattr(feedback, "known_events", None)
    if known is not None and known.version == feedback.version:
        return known.events
    return [(event.status, event.at) for event in feedback.events.all()]


def known_after_move(
    *, feedback: Feedback, last_seen: Feedback | None, recorded: Sequence[Recorded]
) -> KnownEvents | None:
    """The events of `feedback`, the row a move just returned (`recorded`: the event that
    move wrote, if any), when they are known without a read; else None.

    Known when the move was the row's first (version 1): before it the row had the one event
    the submission wrote with it (services.feedback_create: queued, at created_at). Or when
    the caller's `last_seen` row had its events known and is the version just before: moves
    of one row take turns on its lock, and each writes its event in its own transaction, so
    no other event came in between.
    """
    before: Sequence[Recorded] | None = None
    if feedback.version == 1:
        before = ((Status.QUEUED, feedback.created_at),)
    elif last_seen is not None and last_seen.version == feedback.version - 1:
        known = getattr(last_seen, "known_events", None)
        if known is not None and known.version == last_seen.version:
            before = known.events
    if before is None:
        return None
    return KnownEvents(version=feedback.version, events=(*before, *recorded))


def feedback_timeline(*, feedback: Feedback) -> list[TimelineStep]:
    events = recorded_steps(feedback=feedback)
    final = is_final(feedback.status)
    if not events:  # a row from before events were recorded: its status, untimed
        state = "done" if final else "current"
        return [TimelineStep(feedback.status, state), *_ahead(feedback)]
    steps = []
    for index, (status, at) in enumerate(events):
        last = index == len(events) - 1
        steps.append(
            TimelineStep(
                status=status,
                state="current" if last and not final else "done",
                offset=at - feedback.created_at,
            )
        )
    return steps + _ahead(feedback)


def _ahead(feedback: Feedback) -> list[TimelineStep]:
    return [TimelineStep(status=status, state="next") for status in ahead(feedback.status)]
