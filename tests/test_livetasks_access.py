"""Only the owner of a live task (its session, and its user) can watch, poll, cancel or
download it; everyone else gets 404 or a refused watch, and the same nothing."""

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.contrib.sessions.backends.db import SessionStore
from django.template import RequestContext, Template
from django.test import Client, RequestFactory

from livetasks import LiveTaskResult, TaskResultStatus
from livetasks.selectors import result_token
from realtime.routing import websocket_urlpatterns
from tests.livetask_example.tasks import count_to
from tests.test_livetasks import write_numbers


@pytest.fixture(autouse=True)
def example_urls(settings, tmp_path):
    settings.ROOT_URLCONF = "tests.livetask_example.urls"
    settings.STORAGES = {
        **settings.STORAGES,
        "livetasks": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tmp_path / "outputs"},
        },
    }


def started(client: Client) -> tuple[LiveTaskResult, str]:
    """The docs' example started by `client`: its result and the card's URL."""
    answer = client.post("/count/")
    assert answer.status_code == 302
    return LiveTaskResult.objects.get(), answer["Location"]


def test_the_owner_sees_the_card_and_its_poll(db):
    owner = Client()
    result, url = started(owner)
    assert url.startswith("/tasks/") and result.pk.hex not in url and str(result.pk) not in url
    page = owner.get(url)
    assert page.status_code == 200 and "private" in page["Cache-Control"]
    html = page.content.decode()
    assert f'data-watch="task/{url.split("/")[2]}"' in html
    assert f'id="task-{result.pk}"' in html and 'data-status="READY"' in html
    poll = owner.get(url, headers={"HX-Request": "true"})
    assert poll.status_code == 200 and poll.content.decode().lstrip().startswith("<div")


def test_another_session_gets_404_for_the_card_the_cancel_and_the_download(db):
    owner, stranger = Client(), Client()
    result, url = started(owner)
    stranger.get("/")  # a session of its own, with a CSRF cookie
    for answer in (
        stranger.get(url),
        stranger.get(url, headers={"HX-Request": "true"}),
        stranger.post(f"{url}cancel"),
        stranger.get(f"{url}download"),
    ):
        assert answer.status_code == 404
    result.refresh()
    assert result.status == TaskResultStatus.READY and result.cancel_requested_at is None


def test_the_owner_cancels_and_a_second_cancel_is_too_late(db):
    owner = Client()
    result, url = started(owner)
    answer = owner.post(f"{url}cancel", headers={"HX-Request": "true"})
    assert answer.status_code == 200 and 'data-status="CANCELLED"' in answer.content.decode()
    assert owner.post(f"{url}cancel", headers={"HX-Request": "true"}).status_code == 409
    poll = owner.get(url, headers={"HX-Request": "true"})
    assert poll.status_code == 286  # htmx: stop polling


def owned_by_a_client(task, *args, user=None) -> tuple[LiveTaskResult, Client, str]:
    """A result started by a browser whose cookie a test Client then carries."""
    request = RequestFactory().post("/")
    request.session = SessionStore()
    request.user = user or AnonymousUser()
    if user is not None:
        request.session["_auth_user_id"] = str(user.pk)
    result = task.enqueue(*args, owner=request)
    token = result_token(result, session=request.session)
    request.session.save()
    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = request.session.session_key
    return result, client, f"/tasks/{token}/"


def test_only_the_owner_downloads_and_only_once_it_succeeded(db):
    result, owner, url = owned_by_a_client(write_numbers, 3)
    assert owner.get(f"{url}download").status_code == 404  # not yet
    write_numbers.task(str(result.pk))
    answer = owner.get(f"{url}download")
    assert answer.status_code == 200
    assert answer["Content-Disposition"] == 'attachment; filename="numbers.txt"'
    assert b"".join(answer.streaming_content) == b"1\n2\n3\n"
    assert Client().get(f"{url}download").status_code == 404


def test_a_logged_in_owner_other_users_get_404_even_in_the_same_browser(db):
    ada, bob = User.objects.create_user("ada"), User.objects.create_user("bob")
    result, client, url = owned_by_a_client(write_numbers, 3, user=ada)
    assert client.get(url).status_code == 200
    session = SessionStore(session_key=client.cookies[settings.SESSION_COOKIE_NAME].value)
    session["_auth_user_id"] = str(bob.pk)
    session.save()
    assert client.get(url).status_code == 404


def test_the_card_tag_renders_nothing_for_someone_else(db):
    result, _client, _url = owned_by_a_client(write_numbers, 3)
    request = RequestFactory().get("/")
    request.session = SessionStore()
    template = Template("{% load livetasks %}[{% live_task_card result %}]")
    assert template.render(RequestContext(request, {"result": result})) == "[]"


@pytest.mark.django_db(transaction=True)
async def test_another_session_s_watch_is_refused_and_the_owner_s_answered():
    @database_sync_to_async
    def start():
        result, client, url = owned_by_a_client(count_to, 3)
        session = SessionStore(session_key=client.cookies[settings.SESSION_COOKIE_NAME].value)
        return result, dict(session.items()), url.split("/")[2]

    result, owner_session, token = await start()

    async def watch(session: dict) -> str:
        async def app(scope, receive, send):
            return await URLRouter(websocket_urlpatterns)(
                {**scope, "session": session}, receive, send
            )

        ws = WebsocketCommunicator(app, "/ws/watch/")
        assert (await ws.connect())[0]
        await ws.send_to(text_data=f"watch task/{token}")
        frame = await ws.receive_from(timeout=5)
        await ws.disconnect()
        return frame

    assert await watch({}) == f"refused task/{token}"
    stranger = dict(owner_session, **{"realtime.watcher": "someone-else"})
    assert await watch(stranger) == f"refused task/{token}"
    frame = await watch(owner_session)
    assert f'id="task-{result.pk}"' in frame and 'data-status="READY"' in frame
