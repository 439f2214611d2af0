"""Publishing from sync code (a worker): realtime.publish over the real channel layer."""

import pytest
from django.conf import settings
from django.core.cache import cache

from realtime.publish import publish, publish_rendering, status_event
from realtime.watchers import mark_key, mark_watched, watched_languages
from tests.support.layer import LayerListener

GROUP = "test.publish"
# Any template: its words differ by language.
PARTIAL = "503.html"


def test_a_publish_reaches_the_group():
    listener = LayerListener(GROUP)
    assert publish(group=GROUP, html="<p>one</p>", version=1, final=False) is True
    assert listener.receive(timeout=10) == status_event(
        html="<p>one</p>", version=1, final=False, group=GROUP
    )


def test_the_first_publish_after_redis_restarted_is_not_lost(redis_server):
    """The process keeps its layer's connection; Redis restarting leaves it dead once."""
    assert publish(group=GROUP, html="<p>before</p>", version=1, final=False) is True
    redis_server.stop()
    redis_server.start()
    listener = LayerListener(GROUP)
    assert publish(group=GROUP, html="<p>after</p>", version=2, final=False) is True
    assert listener.receive(timeout=10)["html"] == "<p>after</p>"


def test_a_rendering_for_a_group_nobody_watches_is_neither_built_nor_sent():
    """A publisher renders only what someone reads (realtime/watchers.py): with no mark,
    the context is never built, nothing is rendered and nothing reaches the layer."""
    group = "test.publish.unwatched"
    listener = LayerListener(group)
    cache.delete_many([mark_key(group, language) for language, _name in settings.LANGUAGES])
    built = []

    def context():
        built.append(True)
        return {}

    assert publish_rendering(
        group=group, template_name=PARTIAL, context=context, version=1, final=False
    )
    assert built == []
    with pytest.raises(TimeoutError):
        listener.receive(timeout=1)


def test_a_rendering_is_made_in_the_languages_its_watchers_read_only():
    group = "test.publish.portuguese"
    listener = LayerListener(group)  # marks every language: start from none
    cache.delete_many([mark_key(group, language) for language, _name in settings.LANGUAGES])
    mark_watched([group], language="pt-br")
    assert publish_rendering(
        group=group, template_name=PARTIAL, context=dict, version=1, final=False
    )
    event = listener.receive(timeout=10)
    assert set(event["html"]) == {"pt-br"}


def test_marks_that_cannot_be_read_count_as_every_language_watched(redis_server):
    redis_server.stop()
    try:
        assert watched_languages("test.publish.any") == [code for code, _ in settings.LANGUAGES]
    finally:
        redis_server.start()
