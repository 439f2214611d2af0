"""Who watches a group, in which language: so a publisher renders only what someone reads.

channels-redis cannot say who is in a group, and rendering a status for nobody was a
third of a worker's CPU in a drain (docs/benchmarks-notes.md). So a watcher leaves a
mark in the shared cache, one key per group and language, before it reads the state
it watches; a publisher reads the marks after its change is committed, and renders in
those languages only, or not at all.

Why nothing is missed: a watcher marks, then reads. A publisher that found no mark
looked before the mark was made, so after its commit, so the watcher's read has the
change. A mark outlives its watcher (a key expires, it is never deleted: two tabs
may watch in one language); a stale one costs a rendering no one reads, nothing
more. A mark lost (Redis restarted) costs a watcher its frames until its next
re-read, which marks again and sends what is newer: as a frame the layer lost.
"""

import logging
from collections.abc import Iterable

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)


def mark_key(group: str, language: str) -> str:
    return f"realtime:watched:{group}:{language}"


def mark_watched(groups: Iterable[str], *, language: str) -> None:
    """Blocking: `groups` are watched in `language` for REALTIME_WATCHED_SECONDS more.

    Call it before reading the state the watch starts from, and again at each re-read.
    """
    keys = {mark_key(group, language): 1 for group in groups}
    if keys:
        cache.set_many(keys, timeout=settings.REALTIME_WATCHED_SECONDS)


def watched_languages(group: str) -> list[str]:
    """The languages `group` is watched in now (blocking). Every language the site speaks
    when the marks cannot be read: a rendering too many, never a frame too few."""
    languages = [code for code, _name in settings.LANGUAGES]
    try:
        found = cache.get_many([mark_key(group, language) for language in languages])
    except Exception:
        logger.warning("Could not read who watches %s", group, exc_info=True)
        return languages
    return [language for language in languages if mark_key(group, language) in found]


def is_watched(group: str) -> bool:
    """Blocking: someone watches `group`, in any language (True when the marks cannot be
    read). For a publisher of a rendering shared by all languages (a broadcast)."""
    return bool(watched_languages(group))
