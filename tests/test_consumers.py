import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.core.cache import cache

from feedback import delivery, queue, selectors, tokens
from feedback.models import Feedback
from realtime import consumers, watch
from realtime.consumers import HEARTBEAT, heartbeat
from realtime.publish import status_event
from realtime.routing import websocket_urlpatterns
from realtime.watchers import mark_key

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

    claimed = await database_sync_to_async(delivery.feedback_claim)(feedback_id=feedback.pk)
    update = await status_frame(ws)
    assert 'data-status="sending"' in update

    await database_sync_to_async(delivery.feedback_mark_sent)(feedback_id=claimed.pk)
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
    group = selectors.status_group(feedback.pk)
    await layer.group_send(
        group, status_event(group=group, html="<p>stale</p>", version=2, final=False)
    )
    await layer.group_send(
        group, status_event(group=group, html="<p>newer</p>", version=5, final=False)
    )
    assert await status_frame(ws) == "<p>newer</p>"
    await ws.disconnect()


async def test_a_frame_is_forwarded_while_the_database_thread_is_busy():
    """Forwarding a published frame needs no database, so it never waits behind database work.

    Channels gives all of a process's database work one thread (every watch
    read, every re-read); under load it is busy for seconds. Held here until
    the frame has arrived: a frame that queued for that thread would not come.
    """
    feedback = await make_feedback(version=3)
    ws = communicator(feedback_token(feedback.pk))
    await ws.connect()
    await status_frame(ws)  # snapshot at version 3
    release = threading.Event()
    busy = asyncio.ensure_future(sync_to_async(release.wait)())  # the one database thread
    try:
        group = selectors.status_group(feedback.pk)
        await get_channel_layer().group_send(
            group, status_event(group=group, html="<p>newer</p>", version=4, final=False)
        )
        assert await status_frame(ws) == "<p>newer</p>"
    finally:
        release.set()
        await busy
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


@pytest.mark.parametrize("socket", ["status", "page"])
async def test_a_change_published_while_a_watcher_reads_its_snapshot_reaches_it_at_once(
    settings, monkeypatch, socket
):
    """The connect race: the consumer joins the group before it reads, so nothing falls between.

    The snapshot is read, then the row changes and the change is published,
    then the (now stale) snapshot is sent: the change must follow at once,
    not at the next re-read (set far away here). The page socket names the
    group without the database thread, the status socket on it: both join first.
    """
    settings.REALTIME_RESYNC_SECONDS = 60
    feedback = await make_feedback()

    def snapshot_then_a_change(token, *, session, newer_than=-1):
        snapshot = selectors.feedback_snapshot(token, session=session, newer_than=newer_than)
        delivery.feedback_claim(feedback_id=feedback.pk)  # published at once: no transaction
        return snapshot

    racing = watch.Watchable(
        group=selectors.feedback_group_for_token, snapshot=snapshot_then_a_change
    )
    monkeypatch.setitem(watch._kinds, "feedback-racing", racing)
    token = feedback_token(feedback.pk)
    if socket == "status":
        ws = WebsocketCommunicator(application, f"/ws/feedback-racing/{token}/")
        connected, _ = await ws.connect()
        assert connected
    else:
        ws = await open_page_socket()
        await ws.send_to(text_data=f"watch feedback-racing/{token}")
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

    await database_sync_to_async(queue.feedback_publish_queue)()
    frame = await waiting.receive_from(timeout=5)
    assert 'id="feedback-queue"' in frame
    assert 'data-line="' in frame
    await waiting.disconnect()


# -- One socket per page (/ws/watch/) ------------------------------------------------


async def open_page_socket() -> WebsocketCommunicator:
    ws = WebsocketCommunicator(application, "/ws/watch/")
    connected, _ = await ws.connect()
    assert connected
    return ws


async def test_one_page_socket_watches_each_card_it_names_and_stays_open_past_a_final_state():
    first = await make_feedback()
    second = await make_feedback(status=Feedback.Status.SENT, version=2)
    ws = await open_page_socket()
    assert await ws.receive_nothing(timeout=0.2)  # nothing until it names something

    await ws.send_to(text_data=f"watch feedback/{feedback_token(first.pk)}")
    assert f'id="status-{first.pk}"' in await status_frame(ws)
    await ws.send_to(text_data=f"watch feedback/{feedback_token(second.pk)}")
    snapshot = await status_frame(ws)
    assert f'id="status-{second.pk}"' in snapshot and 'data-status="sent"' in snapshot

    # Both updates come over the one socket, each told apart by its group.
    claimed = await database_sync_to_async(delivery.feedback_claim)(feedback_id=first.pk)
    update = await status_frame(ws)
    assert f'id="status-{first.pk}"' in update and 'data-status="sending"' in update
    await database_sync_to_async(delivery.feedback_mark_sent)(feedback_id=claimed.pk)
    assert 'data-status="sent"' in await status_frame(ws)
    assert await ws.receive_nothing(timeout=0.3)  # still open: the page may add cards

    # A card added later is watched over the same socket.
    third = await make_feedback()
    await ws.send_to(text_data=f"watch feedback/{feedback_token(third.pk)}")
    assert f'id="status-{third.pk}"' in await status_frame(ws)
    await ws.disconnect()


async def test_a_frame_not_rendered_in_the_sockets_language_waits_for_the_next_re_read(settings):
    """A publisher renders only the languages marked watched (realtime/watchers.py): a
    frame without the socket's is skipped, its version not taken as shown, and the
    next re-read (which marks again) sends the state in the socket's language."""
    settings.REALTIME_RESYNC_SECONDS = 0.5
    feedback = await make_feedback(status=Feedback.Status.SENDING, version=3)
    ws = communicator(feedback_token(feedback.pk))  # no Accept-Language: English
    await ws.connect()
    assert 'data-status="sending"' in await status_frame(ws)
    await database_sync_to_async(Feedback.objects.filter(pk=feedback.pk).update)(
        status=Feedback.Status.SENT, version=4
    )
    group = selectors.status_group(feedback.pk)
    event = status_event(group=group, html={"pt-br": "<p>enviado</p>"}, version=4, final=True)
    await get_channel_layer().group_send(group, event)
    final = await status_frame(ws)
    assert 'data-status="sent"' in final and "enviado" not in final
    assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": 1000}


async def test_a_page_socket_goes_to_the_database_thread_once_per_watch(settings, monkeypatch):
    """That thread is the process's one for all database work: the session is loaded
    there once, at the handshake, then each watch is one trip (its snapshot)."""
    settings.REALTIME_RESYNC_SECONDS = 60  # no re-read during the test
    trips: list[str] = []

    def counted(function):
        trips.append(function.__name__)
        return database_sync_to_async(function)

    monkeypatch.setattr(consumers, "database_sync_to_async", counted)
    cards = [await make_feedback() for _ in range(2)]
    ws = await open_page_socket()
    for card in cards:
        await ws.send_to(text_data=f"watch feedback/{feedback_token(card.pk)}")
        assert f'id="status-{card.pk}"' in await status_frame(ws)
    await ws.send_to(text_data="watch feedback/forged")  # refused without a trip
    assert await status_frame(ws) == "refused feedback/forged"
    assert trips == ["session_load", "resolve_all", "resolve_all"]
    await ws.disconnect()


async def test_a_page_socket_re_reads_all_its_watches_in_one_trip(settings, monkeypatch):
    settings.REALTIME_RESYNC_SECONDS = 0.2
    trips: list[str] = []

    def counted(function):
        trips.append(function.__name__)
        return database_sync_to_async(function)

    monkeypatch.setattr(consumers, "database_sync_to_async", counted)
    cards = [await make_feedback(status=Feedback.Status.SENDING, version=3) for _ in range(2)]
    ws = await open_page_socket()
    for card in cards:
        await ws.send_to(text_data=f"watch feedback/{feedback_token(card.pk)}")
        assert 'data-status="sending"' in await status_frame(ws)
    # Both change, unpublished (as if the updates were lost): the re-reads find them.
    await database_sync_to_async(Feedback.objects.filter(pk__in=[c.pk for c in cards]).update)(
        status=Feedback.Status.SENT, version=4
    )
    frames = "".join([await status_frame(ws) for _ in cards])
    assert frames.count('data-status="sent"') == len(cards)
    assert all(f'id="status-{card.pk}"' in frames for card in cards)
    assert trips[:3] == ["session_load", "resolve_all", "resolve_all"]
    assert trips[3:] and set(trips[3:]) == {"resolve_all"}  # a round: one trip, both watches
    await ws.disconnect()


async def test_a_page_socket_sends_a_card_only_a_state_newer_than_the_version_it_shows():
    """The submission's answer rendered the card: watching it, the page names its version."""
    shown, older, garbled = [await make_feedback(version=2) for _ in range(3)]
    ws = await open_page_socket()
    await ws.send_to(text_data=f"watch feedback/{feedback_token(shown.pk)} 2")
    await ws.send_to(text_data=f"watch feedback/{feedback_token(older.pk)} 1")
    await ws.send_to(text_data=f"watch feedback/{feedback_token(garbled.pk)} 2x")
    frames = "".join([await status_frame(ws) for _ in range(2)])  # newer than 1; none given
    assert f'id="status-{older.pk}"' in frames and f'id="status-{garbled.pk}"' in frames
    assert await ws.receive_nothing(timeout=0.3)  # the card at version 2 is not sent again

    # Watched all the same: its group and the queue-wide event reach it.
    claimed = await database_sync_to_async(delivery.feedback_claim)(feedback_id=shown.pk)
    update = await status_frame(ws)
    assert f'id="status-{shown.pk}"' in update and f'data-version="{claimed.version}"' in update
    await database_sync_to_async(queue.feedback_publish_queue)()
    assert 'id="feedback-queue"' in await ws.receive_from(timeout=5)
    await ws.disconnect()


async def test_a_card_shown_final_is_not_sent_nor_watched_on(settings, monkeypatch):
    settings.REALTIME_RESYNC_SECONDS = 0.1
    trips: list[str] = []

    def counted(function):
        trips.append(function.__name__)
        return database_sync_to_async(function)

    monkeypatch.setattr(consumers, "database_sync_to_async", counted)
    sent = await make_feedback(status=Feedback.Status.SENT, version=3)
    ws = await open_page_socket()
    await ws.send_to(text_data=f"watch feedback/{feedback_token(sent.pk)} 3")
    assert await ws.receive_nothing(timeout=0.5)
    assert trips == ["session_load", "resolve_all"]  # no re-reads: nothing left to watch
    await ws.disconnect()


async def test_a_page_socket_refuses_a_bad_token_by_name_and_ignores_other_frames():
    feedback = await make_feedback()
    ws = await open_page_socket()
    for frame in ["hello", "watch", "watch feedback/", "watch /x", "unwatch feedback/x"]:
        await ws.send_to(text_data=frame)
    assert await ws.receive_nothing(timeout=0.2)
    await ws.send_to(text_data="watch feedback/forged")
    assert await status_frame(ws) == "refused feedback/forged"
    await ws.send_to(text_data="watch nosuchkind/abc")
    assert await status_frame(ws) == "refused nosuchkind/abc"
    # The socket still works for a good token.
    await ws.send_to(text_data=f"watch feedback/{feedback_token(feedback.pk)}")
    assert 'data-status="queued"' in await status_frame(ws)
    await ws.disconnect()


async def test_a_page_socket_watches_at_most_so_many(settings):
    settings.REALTIME_WATCHES_PER_SOCKET = 2
    rows = [await make_feedback() for _ in range(3)]
    ws = await open_page_socket()
    for row in rows[:2]:
        await ws.send_to(text_data=f"watch feedback/{feedback_token(row.pk)}")
        assert f'id="status-{row.pk}"' in await status_frame(ws)
    name = f"feedback/{feedback_token(rows[2].pk)}"
    await ws.send_to(text_data=f"watch {name}")
    assert await status_frame(ws) == f"refused {name}"
    await ws.disconnect()


@pytest.mark.parametrize("path", ["/ws/watch/", None])
async def test_every_status_socket_gets_a_heartbeat(settings, path):
    settings.REALTIME_HEARTBEAT_SECONDS = 0.2
    feedback = await make_feedback()
    beaten = len(heartbeat.sockets)
    if path is None:
        ws = communicator(feedback_token(feedback.pk))
        await ws.connect()
        assert 'data-status="queued"' in await status_frame(ws)
    else:
        ws = await open_page_socket()
    # Nothing changes, yet the socket says something at every interval.
    assert await status_frame(ws) == HEARTBEAT
    assert await status_frame(ws) == HEARTBEAT
    await ws.disconnect()
    assert len(heartbeat.sockets) == beaten  # a closed socket is no longer beaten


async def test_a_page_socket_hears_the_queue_wide_event_once_however_many_queued_cards(settings):
    # No mark left by another test: this socket's watch must make it (the queue-wide
    # event is read and sent only while someone watches the queue, realtime/watchers.py).
    await sync_to_async(cache.delete_many)(
        [mark_key(queue.QUEUE_GROUP, code) for code, _name in settings.LANGUAGES]
    )
    assert await database_sync_to_async(queue.feedback_publish_queue)() == 0  # nobody: not read
    cards = [await make_feedback() for _ in range(3)]
    ws = await open_page_socket()
    for card in cards:
        await ws.send_to(text_data=f"watch feedback/{feedback_token(card.pk)}")
        assert f'id="status-{card.pk}"' in await ws.receive_from(timeout=5)
    await database_sync_to_async(queue.feedback_publish_queue)()
    assert 'id="feedback-queue"' in await ws.receive_from(timeout=5)
    assert await ws.receive_nothing(timeout=0.5)  # one frame for the socket, not one per card
    await ws.disconnect()


def test_a_watch_is_re_read_and_marked_again_before_its_mark_expires(settings, monkeypatch):
    """However many watch (re-reads spread to REALTIME_RESYNC_PER_SECOND), a watch's mark
    (realtime/watchers.py) is renewed before REALTIME_WATCHED_SECONDS ends."""
    settings.REALTIME_RESYNC_PER_SECOND = 1
    settings.REALTIME_WATCHED_SECONDS = 60
    many = {consumers.Watched(kind="k", token=str(n), group=f"g{n}") for n in range(1000)}
    monkeypatch.setattr(consumers.WatchingConsumer, "live", many)
    assert max(consumers.WatchingConsumer.resync_delay() for _ in range(100)) <= 30
