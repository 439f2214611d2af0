"""System checks: the live tasks' settings, reported at every start (`manage.py check`,
`migrate`) before a bad value can end healthy tasks or expire every link at once."""

from django.conf import settings
from django.core.checks import Error, register

from .api import PROGRESS_INTERVAL


@register()
def live_tasks_settings(app_configs=None, **kwargs) -> list[Error]:
    errors = []
    if settings.LIVETASKS_KEEP_SECONDS <= 0:
        errors.append(Error(
            f"LIVETASKS_KEEP_SECONDS ({settings.LIVETASKS_KEEP_SECONDS}) must be above 0.",
            hint="Results, their outputs and their links would be gone as soon as they end.",
            id="livetasks.E001",
        ))  # fmt: skip
    if settings.LIVETASKS_LEASE <= PROGRESS_INTERVAL:
        errors.append(Error(
            f"LIVETASKS_LEASE ({settings.LIVETASKS_LEASE:g}) must be above "
            f"{PROGRESS_INTERVAL:g} s, how often a task's progress is stored at most.",
            hint="The sweeper would end healthy running tasks as dead.",
            id="livetasks.E002",
        ))  # fmt: skip
    if settings.LIVETASKS_SWEEP_INTERVAL <= 0:
        errors.append(Error(
            f"LIVETASKS_SWEEP_INTERVAL ({settings.LIVETASKS_SWEEP_INTERVAL:g}) must be above 0.",
            id="livetasks.E003",
        ))  # fmt: skip
    return errors
