import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from feedback import selectors, services, tokens
from feedback.models import Feedback
from realtime import watch
from realtime.publish import status_event
from realtime.routing import websocket_urlpatterns

pytestmark = pytest.mark.django_db(transaction=True)

# The submitter's session, as asgi.py's SessionMiddlewareStack would put it in the scope.
SESSION: dict = {}


def with_session(app, session):
    async def app_with_session(scope, receive, send):
        return await app({**scope, "session": session}, receive, send)

    return app_with_session


application = with_session(URLRouter(websocket_urlpatterns), SESSION)


def feedback_token(feedback_id) -> str:
    return tokens.feedback_token(feedback_id, session=SESSION)


def communicator(token: str) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, f"/ws/feedback/{token}/")


async def status_frame(ws: WebsocketCommunicator) -> str:
    """The next status pushed, past the queue-wide events a queued watcher also hears."""
    while True:
        frame = await ws.receive_from(timeout=5)
        if 'id="feedback-queue"' not in frame:
            return frame


@database_sync_to_async
def make_feedback(**fields) -> Feedback:
    return Feedback.objects.create(email="ada@example.com", message="Hi", **fields)


async def test_a_watcher_gets_the_current_state_at_once_then_updates():
    feedback = await make_feedback()
    ws = communicator(feedback_token(feedback.pk))
    connected, _ = await ws.connect()
    assert connected
    snapshot = await status_frame(ws)
    assert 'data-status="queued"' in snapshot

    claimed = await database_sync_to_async(services.feedback_claim)(feedback_id=feedback.pk)
    update = await status_frame(ws)
    assert 'data-status="sending"' in update

    await database_sync_to_async(services.feedback_mark_sent)(feedback=claimed)
    final = await status_frame(ws)
    assert 'data-status="sent"' in final
    # At a final state the server closes normally, so the browser stops listening.
    assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": 1000}


async def test_a_late_watcher_still_sees_sent():
    feedback = await make_feedback(status=Feedback.Status.SENT, version=4)
    ws = communicator(feedback_token(feedback.pk))
    connected, _ = await ws.connect()
    assert connected
    assert 'data-status="sent"' in await status_frame(ws)
    assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": 1000}


@pytest.mark.parametrize("token", ["forged", "e30:1abc:xyz", "-"])
async def test_a_bad_token_is_closed_with_4403_and_gets_no_data(token):
    await make_feedback()
    ws = communicator(token)
    connected, _ = await ws.connect()
    assert connected  # accepted, then closed: htmx would retry a refused handshake
    assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}
    assert await ws.receive_nothing()


async def test_a_token_for_a_deleted_feedback_is_refused():
    feedback = await make_feedback()
    token = feedback_token(feedback.pk)
    await database_sync_to_async(feedback.delete)()
    ws = communicator(token)
    await ws.connect()
    assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}


async def test_an_older_update_never_overwrites_a_newer_one():
    feedback = await make_feedback(version=3)
    ws = communicator(feedback_token(feedback.pk))
    await ws.connect()
    await status_frame(ws)  # snapshot at version 3
    layer = get_channel_layer()
    group = services.status_group(feedback.pk)
    await layer.group_send(group, status_event(html="<p>stale</p>", version=2, final=False))
    await layer.group_send(group, status_event(html="<p>newer</p>", version=5, final=False))
    assert await status_frame(ws) == "<p>newer</p>"
    await ws.disconnect()


async def test_an_update_lost_on_the_way_is_caught_up_by_re_reading_the_row(settings):
    """channels-redis delivers at most once; the watcher re-reads the row now and then."""
    settings.REALTIME_RESYNC_SECONDS = 0.2
    feedback = await make_feedback(status=Feedback.Status.SENDING, version=3)
    ws = communicator(feedback_token(feedback.pk))
    await ws.connect()
    assert 'data-status="sending"' in await status_frame(ws)
    assert await ws.receive_nothing(timeout=0.6)  # nothing new: nothing sent again

    # The row changes but the update is never published (as if it were lost).
    await database_sync_to_async(Feedback.objects.filter(pk=feedback.pk).update)(
        status=Feedback.Status.SENT, version=4
    )
    assert 'data-status="sent"' in await status_frame(ws)
    assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": 1000}


async def test_a_change_published_while_a_watcher_reads_its_snapshot_reaches_it_at_once(
    settings, monkeypatch
):
    """The connect race: the consumer joins the group before it reads, so nothing falls between.

    The snapshot is read, then the row changes and the change is published,
    then the (now stale) snapshot is sent: the change must follow at once,
    not at the next re-read (set far away here).
    """
    settings.REALTIME_RESYNC_SECONDS = 60
    feedback = await make_feedback()

    def snapshot_then_a_change(token, *, session):
        snapshot = selectors.feedback_snapshot(token, session=session)
        services.feedback_claim(feedback_id=feedback.pk)  # published at once: no transaction
        return snapshot

    racing = watch.Watchable(
        group=selectors.feedback_group_for_token, snapshot=snapshot_then_a_change
    )
    monkeypatch.setitem(watch._kinds, "feedback-racing", racing)
    ws = WebsocketCommunicator(application, f"/ws/feedback-racing/{feedback_token(feedback.pk)}/")
    connected, _ = await ws.connect()
    assert connected
    assert 'data-status="queued"' in await status_frame(ws)
    assert 'data-status="sending"' in await status_frame(ws)
    await ws.disconnect()


async def test_a_queued_watcher_hears_the_queue_wide_event_and_a_final_one_does_not():
    queued = await make_feedback()
    sent = await make_feedback(status="sent", version=2)
    waiting = communicator(feedback_token(queued.pk))
    await waiting.connect()
    assert 'data-status="queued"' in await waiting.receive_from(timeout=5)
    done = communicator(feedback_token(sent.pk))
    await done.connect()
    assert 'data-status="sent"' in await done.receive_from(timeout=5)
    assert (await done.receive_output(timeout=5))["type"] == "websocket.close"

    await database_sync_to_async(services.feedback_publish_queue)()
    frame = await waiting.receive_from(timeout=5)
    assert 'id="feedback-queue"' in frame
    assert 'data-line="' in frame
    await waiting.disconnect()
