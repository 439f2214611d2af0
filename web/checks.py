"""System checks: timings of the wiring that must agree, reported at every start."""

from django.conf import settings
from django.core.checks import Error, register


@register()
def timings_agree(app_configs=None, **kwargs) -> list[Error]:
    errors = []
    beat, silence = settings.REALTIME_HEARTBEAT_SECONDS, settings.REALTIME_SILENCE_SECONDS
    if beat <= 0 or silence < 2 * beat:
        errors.append(Error(
            f"REALTIME_SILENCE_SECONDS ({silence:g}) must be at least twice "
            f"REALTIME_HEARTBEAT_SECONDS ({beat:g}), and that above 0.",
            hint="One late heartbeat is not a dead socket.",
            id="web.E001",
        ))  # fmt: skip
    ask, census = settings.WORKER_PRESENCE_TIMEOUT, settings.WORKER_CENSUS_SECONDS
    if ask <= 0 or census <= ask:
        errors.append(Error(
            f"WORKER_CENSUS_SECONDS ({census:g}) must be longer than WORKER_PRESENCE_TIMEOUT "
            f"({ask:g}), and that above 0: a census waits that long for the answers.",
            id="web.E002",
        ))  # fmt: skip
    if settings.FEEDBACK_QUEUE_LINE_MAX < 1:
        errors.append(Error("FEEDBACK_QUEUE_LINE_MAX must be 1 or more.", id="web.E003"))
    if settings.TRUSTED_PROXY_HOPS < 0:
        errors.append(Error("TRUSTED_PROXY_HOPS must be 0 or more.", id="web.E004"))
    return errors
