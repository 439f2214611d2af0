"""Publishing from sync code (a worker): realtime.publish over the real channel layer."""

from realtime.publish import publish, status_event
from tests.support.layer import LayerListener

GROUP = "test.publish"


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
