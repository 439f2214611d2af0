"""Live tasks: any Celery task, watched live (docs/live-tasks.md)."""

from typing import Any

__all__ = [
    "Cancelled",
    "LiveTask",
    "LiveTaskResult",
    "TaskContext",
    "TaskResultStatus",
    "live_task",
    "page_url",
]


def __getattr__(name: str) -> Any:
    # Lazily: the names come with the models, which load only once the app registry is.
    if name in __all__:
        from . import api, models

        return getattr(api, name, None) or getattr(models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
