"""The public API: make a Celery task watchable (livetasks/__init__.py lists the names)."""

import io
import logging
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

from celery import Task, shared_task
from django.conf import settings
from django.core.files import File
from django.core.files.storage import storages
from django.http import HttpRequest
from django.urls import reverse
from django.utils import translation
from django.utils.json import normalize_json

from . import services
from .models import LiveTaskResult, TaskResultStatus
from .selectors import result_templates, result_token

logger = logging.getLogger(__name__)

# A progress() stores and publishes at most this often, but always when its step
# changes and when it reaches its total.
PROGRESS_INTERVAL = 0.25


def output_storage():
    return storages["livetasks"]


class Cancelled(Exception):  # noqa: N818 (django.tasks-like: what happened, not an "Error")
    """Raised by TaskContext.progress() when the task should stop: a cancel was asked
    (or its row was taken back). Let it propagate: the task ends CANCELLED."""


class TaskContext:
    """What a live task is given: `progress()`, `output()`, and its `result_id`."""

    def __init__(self, result: LiveTaskResult) -> None:
        self.result_id: uuid.UUID = result.pk
        self._step = result.step
        self._written_at = float("-inf")
        # The last `done` reported, stored or not: a task that stops keeps how far it got.
        self.done = result.done
        self.output_path = ""
        self.output_name = ""
        self.output_content_type = ""

    def progress(self, *, done: int, total: int | None = None, step: str = "") -> None:
        """Store and publish how far the task is (throttled); raise Cancelled if it should stop.

        `step`: a string marked for translation (gettext_lazy): it is stored in the
        site's default language and shown in each reader's.
        """
        step = str(step)  # in LANGUAGE_CODE: the task runs under it (run_live_task)
        self.done = done
        now = time.monotonic()
        due = (
            now - self._written_at >= PROGRESS_INTERVAL
            or step != self._step
            or (total is not None and done >= total)
        )
        if not due:
            if not services.result_goes_on(self.result_id):
                raise Cancelled
            return
        if services.result_progress(self.result_id, done=done, total=total, step=step) is None:
            raise Cancelled
        self._written_at, self._step = now, step

    @contextmanager
    def output(
        self, name: str, *, content_type: str = "text/plain", encoding: str = "utf-8"
    ) -> Iterator[IO[str]]:
        """A text file to write the task's output to, offered for download only once the
        task ended SUCCESSFUL. Written to a temporary file first (memory stays flat),
        then stored in the "livetasks" storage."""
        if self.output_name:
            raise RuntimeError("a live task has one output")
        self.output_name, self.output_content_type = name, content_type
        with tempfile.TemporaryFile() as raw:
            text = io.TextIOWrapper(raw, encoding=encoding, newline="")
            yield text
            text.flush()
            raw.seek(0)
            self.output_path = output_storage().save(
                f"{self.result_id.hex}/{name}", File(raw, name=name)
            )
            text.detach()

    def discard_output(self) -> None:
        if self.output_path:
            output_storage().delete(self.output_path)
            self.output_path = ""


def run_live_task(function: Callable[..., Any], result_id: str) -> None:
    """The body of every live task's Celery task: claim the row, run, end in a final state
    (SUCCESSFUL with what the function returned, as JSON)."""
    result = services.result_claim(result_id)
    if result is None:
        return  # cancelled before it started, or delivered twice: nothing to do
    context = TaskContext(result)
    Status = TaskResultStatus
    try:
        with translation.override(settings.LANGUAGE_CODE):
            returned = function(context, *result.args, **result.kwargs)
        return_value = normalize_json(returned)  # TypeError, ValueError: FAILED
    except Cancelled:
        context.discard_output()
        services.result_finish(
            result_id, status=Status.CANCELLED, done=context.done, output_name=context.output_name
        )
        return
    except Exception as error:
        logger.exception("Live task %s (%s) failed", result.name, result_id)
        context.discard_output()
        services.result_finish(
            result_id, status=Status.FAILED, error=repr(error)[:2000], done=context.done
        )
        return
    finished = services.result_finish(
        result_id,
        status=Status.SUCCESSFUL,
        return_value=return_value,
        output_path=context.output_path,
        output_name=context.output_name,
        output_content_type=context.output_content_type,
    )
    if finished is None:  # taken back meanwhile (the sweeper): nothing half-done is offered
        context.discard_output()


@dataclass(frozen=True)
class LiveTask:
    """A function made a live task by @live_task; `.enqueue()` starts it."""

    function: Callable[..., Any]
    task: Task
    cancellable: bool
    result_template: str = ""

    @property
    def name(self) -> str:
        return self.task.name

    def enqueue(self, *args: Any, owner: HttpRequest, **kwargs: Any) -> LiveTaskResult:
        """A committed READY result, owned by `owner`'s session (and user); the task is
        sent once the transaction commits. Arguments must be JSON-serializable."""
        return services.result_create(
            task=self.task, args=list(args), kwargs=kwargs,
            cancellable=self.cancellable, owner=owner,
        )  # fmt: skip


def live_task(
    function: Callable[..., Any] | None = None,
    *,
    cancellable: bool = False,
    result_template: str = "",
    **options: Any,
) -> Any:
    """Make `function(context, *args, **kwargs)` a live task: a Celery task underneath
    (acks_late; `options` go to Celery's shared_task: name, time limits, queue…).

    `result_template`: a template the card includes once the task ended, with `result` (its
    `return_value` among the rest), to say what came of it in the reader's words.
    """

    def make(function: Callable[..., Any]) -> LiveTask:
        def run(task: Task, result_id: str) -> None:
            run_live_task(function, result_id)

        run.__name__, run.__module__ = function.__name__, function.__module__
        run.__doc__ = function.__doc__
        task = shared_task(
            bind=True,
            name=options.pop("name", f"{function.__module__}.{function.__name__}"),
            acks_late=True,
            reject_on_worker_lost=True,
            ignore_result=True,
            **options,
        )(run)
        if result_template:
            result_templates[task.name] = result_template
        return LiveTask(
            function=function, task=task, cancellable=cancellable, result_template=result_template
        )

    return make if function is None else make(function)


def page_url(result: LiveTaskResult, request: HttpRequest) -> str:
    """The card's own page (for a redirect after the POST that started it)."""
    token = result_token(result, session=request.session)
    return reverse("livetasks:card", kwargs={"token": token})
