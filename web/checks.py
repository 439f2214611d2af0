"""System checks: settings an operator can set against each other, reported at every start."""

from django.conf import settings
from django.core.checks import Error, register


@register()
def timings_agree(app_configs=None, **kwargs) -> list[Error]:
    errors = []
    if settings.REALTIME_HEARTBEAT_SECONDS <= 0:
        errors.append(Error("REALTIME_HEARTBEAT_SECONDS must be above 0.", id="web.E001"))
    ask, census = settings.WORKER_PRESENCE_TIMEOUT, settings.WORKER_CENSUS_SECONDS
    if not 0 < ask < census:
        errors.append(Error(
            f"WORKER_PRESENCE_TIMEOUT ({ask:g}) must be above 0 and below {census:g} s, "
            "how often a census of the workers waits that long for their answers.",
            id="web.E002",
        ))  # fmt: skip
    if settings.FEEDBACK_QUEUE_LINE_MAX < 1:
        errors.append(Error("FEEDBACK_QUEUE_LINE_MAX must be 1 or more.", id="web.E003"))
    if settings.TRUSTED_PROXY_HOPS < 0:
        errors.append(Error("TRUSTED_PROXY_HOPS must be 0 or more.", id="web.E004"))
    return errors
