from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class LiveTasksConfig(AppConfig):
    name = "livetasks"
    verbose_name = _("Live tasks")

    def ready(self) -> None:
        from realtime import watch

        from . import checks  # noqa: F401  (registers the settings check)
        from .selectors import KIND, task_group_for_token, task_snapshot

        watch.register(KIND, group=task_group_for_token, snapshot=task_snapshot)
