"""A feedback's timeline: the steps it went through, each with its time since submit."""

from dataclasses import dataclass
from datetime import timedelta

from .models import Feedback, Status
from .transitions import ahead, is_final


@dataclass(frozen=True)
class TimelineStep:
    status: str
    label: str
    state: str  # "done", "current" or "next"
    since_submit: str = ""  # "+12 ms", "+3.01 s"; empty for a step still ahead

    @property
    def state_label(self) -> str:
        # Said in words too: colour is never the only signal.
        if self.status == Status.FAILED:
            return "gave up"
        if self.status == Status.CANCELLED:
            return "taken back"
        return {"done": "done", "current": "now", "next": "next"}[self.state]


def format_offset(offset: timedelta) -> str:
    ms = max(0, round(offset.total_seconds() * 1000))
    return f"+{ms} ms" if ms < 1000 else f"+{ms / 1000:.2f} s"


def feedback_timeline(*, feedback: Feedback) -> list[TimelineStep]:
    events = list(feedback.events.all())
    final = is_final(feedback.status)
    if not events:  # a row from before events were recorded: its status, untimed
        state = "done" if final else "current"
        events_free = [TimelineStep(feedback.status, feedback.get_status_display(), state)]
        return events_free + _ahead(feedback)
    steps = []
    for index, event in enumerate(events):
        last = index == len(events) - 1
        steps.append(
            TimelineStep(
                status=event.status,
                label=Status(event.status).label,
                state="current" if last and not final else "done",
                since_submit=format_offset(event.at - feedback.created_at),
            )
        )
    return steps + _ahead(feedback)


def _ahead(feedback: Feedback) -> list[TimelineStep]:
    return [
        TimelineStep(status=status, label=status.label, state="next")
        for status in ahead(feedback.status)
    ]
