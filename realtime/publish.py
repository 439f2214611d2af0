"""Publishing rendered status to watchers, from any process (web or worker)."""

import asyncio
import concurrent.futures
import logging
import os
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.template.loader import render_to_string
from django.utils import translation
from redis.exceptions import ConnectionError as RedisConnectionError

from .watchers import watched_languages

logger = logging.getLogger(__name__)

EVENT_TYPE = "status.update"
BROADCAST_TYPE = "watch.broadcast"
# A publish that takes longer than this is given up (and logged): the caller,
# a worker sending an email, must never hang on Redis.
PUBLISH_TIMEOUT = 2 * settings.REDIS_TIMEOUT + 1  # both connection attempts, and room
# A connection found closed is tried once more (a timeout is not: see above).
CONNECTION_ATTEMPTS = 2
CONNECTION_LOST = (ConnectionError, RedisConnectionError)


def status_event(*, group: str, html: str | Mapping[str, str], version: int, final: bool) -> dict:
    """The channel-layer message; `group` lets a socket watching many tell them apart."""
    return {"type": EVENT_TYPE, "group": group, "html": html, "version": version, "final": final}


class _PublishLoop:
    """One event loop per process, on its own thread, for publishing from sync code.

    Why not ``async_to_sync(layer.group_send)``: called from a plain thread (a
    Celery worker), it starts a thread and an event loop for every call, and the
    channel layer, whose connections belong to a loop, connects to Redis anew
    each time. The bench (docs/benchmarks-notes.md) measured that as the largest cost
    of a publish. Here the loop, and so the layer's connection, lives on.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def run(self, coroutine: Coroutine[Any, Any, Any], *, timeout: float) -> Any:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._running_loop())
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._thread is None or not self._thread.is_alive():
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._loop.run_forever, name="realtime-publish", daemon=True
                )
                self._thread.start()
            return self._loop

    def forget(self) -> None:
        """In a forked child (Celery's prefork pool) the thread is gone: start afresh."""
        self._lock = threading.Lock()
        self._loop = None
        self._thread = None


_publish_loop = _PublishLoop()
os.register_at_fork(after_in_child=_publish_loop.forget)


def publish(*, group: str, html: str | Mapping[str, str], version: int, final: bool) -> bool:
    """Send rendered HTML to every watcher of `group`: one rendering per language
    ({language code: html}), of which each socket sends its page's, or one for all.

    The stored state is the truth and a published update only a hint, so a
    failure here (Redis down) is logged and reported, never raised: watchers
    catch up from the snapshot when they (re)connect.
    """
    return _group_send(group, status_event(html=html, version=version, final=final, group=group))


def render_each_language(
    template_name: str, context: Mapping[str, Any], languages: Iterable[str]
) -> dict[str, str]:
    """`template_name` rendered once per language of `languages`, from one context: read
    once, put into words per language (docs/decisions/0008-a-card-in-its-readers-language.md)."""
    rendered = {}
    for language in languages:
        with translation.override(language):
            rendered[language] = render_to_string(template_name, context)
    return rendered


def publish_rendering(
    *,
    group: str,
    template_name: str,
    context: Callable[[], Mapping[str, Any]],
    version: int,
    final: bool,
) -> bool:
    """Publish the state of one watched row: its status partial in each language it is
    watched in, with the row's version (a watcher drops an older one) and whether it is
    final. Call it once the change is committed (`transaction.on_commit`): a rolled back
    change is never shown.

    `context`: a function that builds the partial's context (`partial(my_context, row=row)`).
    Nobody watching (realtime/watchers.py), it is not called: nothing is read, rendered or sent.
    """
    languages = watched_languages(group)
    if not languages:
        return True  # nobody to tell: a watcher who comes later reads the committed row
    html = render_each_language(template_name, context(), languages)
    return publish(group=group, html=html, version=version, final=final)


def broadcast(*, group: str, html: str) -> bool:
    """Send rendered HTML, not tied to one watched object's version, to every
    watcher that joined `group` (a Snapshot's `also`). One publish, however many listen."""
    return _group_send(group, {"type": BROADCAST_TYPE, "html": html})


def _group_send(group: str, event: dict) -> bool:
    layer = get_channel_layer()
    if layer is None:
        return False
    for attempt in range(1, CONNECTION_ATTEMPTS + 1):
        try:
            _publish_loop.run(layer.group_send(group, event), timeout=PUBLISH_TIMEOUT)
        except CONNECTION_LOST:
            # The layer keeps its connection between publishes: after Redis
            # restarted, the first use finds it dead, and the next connects anew.
            if attempt < CONNECTION_ATTEMPTS:
                continue
            logger.warning("Could not publish an update to %s", group, exc_info=True)
            return False
        except Exception:
            logger.warning("Could not publish an update to %s", group, exc_info=True)
            return False
        return True
    return False
