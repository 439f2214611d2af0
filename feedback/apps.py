from django.apps import AppConfig


class FeedbackConfig(AppConfig):
    name = "feedback"

    def ready(self) -> None:
        from realtime import watch

        from .services import feedback_snapshot

        watch.register("feedback", feedback_snapshot)
