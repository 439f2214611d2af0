"""How long the server took to answer each submission, for the demo's side-by-side.

The last few answer times per send mode are kept in the session, so the
comparison survives a reload and never mixes one visitor's numbers with
another's.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.contrib.sessions.backends.base import SessionBase
from django.http import HttpResponse
from django.utils.formats import number_format
from django.utils.translation import gettext

from .models import SendMode

SESSION_KEY = "feedback.answers"
KEEP = 5  # per mode


@dataclass
class Stopwatch:
    ms: int = 0

    @property
    def label(self) -> str:
        # "3,012 ms" in English, "3.012 ms" in Portuguese.
        return gettext("%(ms)s ms") % {"ms": number_format(self.ms, force_grouping=True)}


@contextmanager
def stopwatch() -> Iterator[Stopwatch]:
    """Measure the wall-clock time of the block, in whole milliseconds."""
    watch = Stopwatch()
    started = time.perf_counter()
    try:
        yield watch
    finally:
        watch.ms = round((time.perf_counter() - started) * 1000)


@contextmanager
def answers_timed(session: SessionBase, *, mode: str) -> Iterator[Stopwatch]:
    """Time a submission and, if it was taken, keep its answer time in the session."""
    with stopwatch() as answered:
        yield answered
    answers_record(session, mode=mode, ms=answered.ms)


def answers_record(session: SessionBase, *, mode: str, ms: int) -> None:
    answers = session.get(SESSION_KEY, {})
    answers[mode] = [ms, *answers.get(mode, [])][:KEEP]
    session[SESSION_KEY] = answers


@dataclass(frozen=True)
class AnswerColumn:
    mode: str
    label: str
    times: list[str]  # newest first, e.g. "3,012 ms" (in the request's language)


def answers_recent(session: SessionBase) -> list[AnswerColumn]:
    """One column per send mode, "before" first, for the side-by-side."""
    answers = session.get(SESSION_KEY, {})
    return [
        AnswerColumn(mode, mode.label, [Stopwatch(ms).label for ms in answers.get(mode, [])])
        for mode in (SendMode.SYNC, SendMode.ASYNC)
    ]


def server_timing(ms: int) -> str:
    """A Server-Timing header value, so tools (and benchmarks) see the server's share."""
    return f'app;dur={ms};desc="feedback submit"'


def with_server_timing(response: HttpResponse, answered: Stopwatch) -> HttpResponse:
    response["Server-Timing"] = server_timing(answered.ms)
    return response
