"""Publishing rendered status to watchers, from any process (web or worker)."""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

EVENT_TYPE = "status.update"


def status_event(*, html: str, version: int, final: bool) -> dict:
    return {"type": EVENT_TYPE, "html": html, "version": version, "final": final}


def publish(*, group: str, html: str, version: int, final: bool) -> bool:
    """Send rendered HTML to every watcher of `group`.

    The stored state is the truth and a published update only a hint, so a
    failure here (Redis down) is logged and reported, never raised: watchers
    catch up from the snapshot when they (re)connect.
    """
    layer = get_channel_layer()
    if layer is None:
        return False
    try:
        async_to_sync(layer.group_send)(
            group, status_event(html=html, version=version, final=final)
        )
    except Exception:
        logger.warning("Could not publish an update to %s", group, exc_info=True)
        return False
    return True
