from celery import shared_task

from .sweeping import live_tasks_sweep


@shared_task
def sweep_live_tasks() -> dict[str, int]:
    """Run by beat every LIVETASKS_SWEEP_INTERVAL seconds."""
    return live_tasks_sweep()
