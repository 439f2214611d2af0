from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class FeedbackConfig(AppConfig):
    name = "feedback"
    verbose_name = _("Feedback")

    def ready(self) -> None:
        from realtime import watch

        from . import (
            checks,  # noqa: F401  (registers the timeouts check)
            jobs,  # noqa: F401  (registers the admin's live tasks: a worker runs them by name)
            tasks,  # noqa: F401  (registers the Celery tasks: moves.enqueue finds one)
        )
        from .queue import QUEUE_GROUP
        from .selectors import feedback_group_for_token, feedback_snapshot

        watch.register(
            "feedback",
            group=feedback_group_for_token,
            snapshot=feedback_snapshot,
            also=(QUEUE_GROUP,),  # a queued card's watcher hears the queue-wide event
        )
