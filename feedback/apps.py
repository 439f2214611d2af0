from django.apps import AppConfig


class FeedbackConfig(AppConfig):
    name = "feedback"

    def ready(self) -> None:
        from realtime import watch

        from . import checks  # noqa: F401  (registers the timeouts check)
        from .selectors import feedback_group_for_token, feedback_snapshot

        watch.register("feedback", group=feedback_group_for_token, snapshot=feedback_snapshot)
