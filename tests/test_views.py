import re

import pytest
from django.conf import settings
from django.core import signing
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import include, path, resolve, reverse

from feedback import selectors
from feedback.models import Feedback
from feedback.tokens import feedback_id_from_token, feedback_token

pytestmark = pytest.mark.django_db

# Tests run with DEBUG off, so the Outbox is not routed by the project's URLs.
urlpatterns = [
    path("outbox/", include("outbox.urls")),
    path("", include("feedback.urls")),
]

HTMX = {"HX-Request": "true"}
CSRF = r'name="csrfmiddlewaretoken" value="([^"]+)"'


def watch_token(client, feedback) -> str:
    """A token bound to the test client's session, as if this client had submitted it."""
    session = client.session
    token = feedback_token(feedback.pk, session=session)
    session.save()
    # The first watcher key gives the session a new key, as the response's cookie would.
    client.cookies[settings.SESSION_COOKIE_NAME] = session.session_key
    return token


def test_the_form_page_has_the_fields_and_a_submit_button(client):
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="email"' in html and 'name="message"' in html
    assert 'type="submit"' in html
    assert "/static/django_htmx/htmx-2.min.js" in html  # served by us, not a CDN
    assert "/static/js/live.js" in html  # one status socket for the page


def test_htmx_submit_stores_the_row_and_answers_with_a_queued_status(client):
    response = client.post("/", {"email": "ada@example.com", "message": "Hi"}, headers=HTMX)
    assert response.status_code == 200
    feedback = Feedback.objects.get()
    assert (feedback.email, feedback.message, feedback.status) == (
        "ada@example.com",
        "Hi",
        "queued",
    )
    html = response.content.decode()
    assert 'data-status="queued"' in html
    assert f'id="status-{feedback.pk}"' in html
    token = re.search(r'data-watch="feedback/([^"]+)"', html).group(1)
    assert feedback_id_from_token(token, session=client.session) == feedback.pk
    assert 'hx-swap-oob="afterbegin:#submissions"' in html
    assert f"/feedback/{feedback.pk}/" not in html  # never a bare id in a URL


@pytest.mark.parametrize("language", ["en", "pt-br"])
def test_the_answers_empty_form_is_the_forms_own_with_this_requests_csrf_token(language):
    """It is rendered once per language and reused: the next submission must pass CSRF."""
    client = Client(enforce_csrf_checks=True, HTTP_ACCEPT_LANGUAGE=f"{language},en;q=0.5")
    token = re.search(CSRF, client.get("/").content.decode()).group(1)
    for n in range(2):
        data = {"email": f"ada{n}@example.com", "message": "Hi", "csrfmiddlewaretoken": token}
        answer = client.post("/", data, headers=HTMX).content.decode()
        form = answer[answer.index('<form id="feedback-form"') : answer.index("</form>") + 7]
        token = re.search(CSRF, form).group(1)
        # The same markup as the form partial renders for htmx, in the page's language.
        fresh = client.get("/", headers=HTMX).content.decode().strip()
        assert re.sub(CSRF, "", form) == re.sub(CSRF, "", fresh)
        assert f'<html lang="{language}">' in client.get("/").content.decode()
    assert Feedback.objects.count() == 2


def test_the_answers_card_can_be_undone_with_its_own_csrf_token(settings):
    """The answer renders without the request's context processors: its card's cancel form
    still carries the request's CSRF token, the same one as the empty form above it."""
    settings.FEEDBACK_UNDO_SECONDS = 5
    client = Client(enforce_csrf_checks=True)
    token = re.search(CSRF, client.get("/").content.decode()).group(1)
    data = {"email": "ada@example.com", "message": "Hi", "csrfmiddlewaretoken": token}
    answer = client.post("/", data, headers=HTMX).content.decode()
    cancel = re.search(
        r'<form id="cancel-[^"]+"[^>]* action="([^"]+)"[^>]*>(.*?)</form>', answer, re.S
    )
    tokens = {re.search(CSRF, cancel.group(2)).group(1), *re.findall(CSRF, answer)}
    assert len(tokens) == 1  # one token for the answer's two forms
    undone = client.post(cancel.group(1), {"csrfmiddlewaretoken": tokens.pop()}, headers=HTMX)
    assert undone.status_code == 200
    assert Feedback.objects.get().status == "cancelled"


def test_htmx_submit_with_bad_input_shows_errors_in_place_and_stores_nothing(client):
    response = client.post("/", {"email": "nope", "message": ""}, headers=HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<form id="feedback-form"')
    assert "Enter a valid email address." in html
    assert "This field is required." in html
    assert not Feedback.objects.exists()


def test_plain_post_redirects_303_to_the_status_page(client):
    response = client.post("/", {"email": "ada@example.com", "message": "Hi"})
    assert response.status_code == 303
    feedback = Feedback.objects.get()
    match = resolve(response["Location"])
    assert match.view_name == "feedback:status"
    assert feedback_id_from_token(match.kwargs["token"], session=client.session) == feedback.pk
    page = client.get(response["Location"])
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-status="queued"' in html
    # Without JavaScript the page refreshes itself until a final state.
    assert '<meta http-equiv="refresh"' in html


def test_plain_post_with_bad_input_renders_the_page_with_errors(client):
    response = client.post("/", {"email": "ada@example.com", "message": ""})
    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    assert not Feedback.objects.exists()


def test_status_page_of_a_final_state_stops_refreshing(client):
    feedback = Feedback.objects.create(email="ada@example.com", message="Hi", status="sent")
    page = client.get(reverse("feedback:status", kwargs={"token": watch_token(client, feedback)}))
    html = page.content.decode()
    assert 'data-status="sent"' in html
    assert "http-equiv" not in html


def test_status_fragment_for_htmx(client):
    feedback = Feedback.objects.create(email="ada@example.com", message="Hi", status="sending")
    url = reverse("feedback:status", kwargs={"token": watch_token(client, feedback)})
    response = client.get(url, headers=HTMX)
    html = response.content.decode().strip()
    assert html.startswith(f'<div id="status-{feedback.pk}"')
    assert 'data-status="sending"' in html


@pytest.mark.parametrize("token", ["nope", "e30:1abc:xyz"])
def test_a_bad_token_is_a_404(client, token):
    assert client.get(f"/feedback/{token}/").status_code == 404


def test_a_status_url_opened_in_another_browser_is_a_404(client):
    response = client.post("/", {"email": "ada@example.com", "message": "Hi"})
    assert client.get(response["Location"]).status_code == 200
    assert Client().get(response["Location"]).status_code == 404  # no session
    other = Client()
    other.post("/", {"email": "bob@example.com", "message": "Yo"})  # a session of its own
    assert other.get(response["Location"]).status_code == 404


def test_an_expired_status_url_is_a_404(client, settings, monkeypatch):
    response = client.post("/", {"email": "ada@example.com", "message": "Hi"})
    later = signing.time.time() + settings.FEEDBACK_TOKEN_MAX_AGE + 5
    monkeypatch.setattr(signing.time, "time", lambda: later)
    page = client.get(response["Location"])
    assert page.status_code == 404
    assert "Nothing here" in page.content.decode()


def test_admin_lists_filters_and_searches_feedback(admin_client):
    Feedback.objects.create(email="ada@example.com", message="Hi", status="sent")
    Feedback.objects.create(email="bob@example.com", message="Yo", status="failed")
    response = admin_client.get("/admin/feedback/feedback/?status__exact=sent")
    assert response.status_code == 200
    assert "ada@example.com" in response.content.decode()
    assert "bob@example.com" not in response.content.decode()
    response = admin_client.get("/admin/feedback/feedback/?q=bob")
    assert "bob@example.com" in response.content.decode()
    assert "ada@example.com" not in response.content.decode()


# -- The HTTP fallback while the websocket is down --------------------------------


def test_a_watcher_polls_its_status_over_http_until_a_final_state(client):
    feedback = Feedback.objects.create(email="ada@example.com", message="Hi", status="sending")
    url = reverse("feedback:status", kwargs={"token": watch_token(client, feedback)})
    page = client.get(url).content.decode()
    article = re.search(r"<article[^>]*>", page).group(0)
    assert f'hx-get="{url}"' in article and 'hx-trigger="every 2s, live:refresh"' in article
    assert 'data-poll-status="when-socket-down"' in article
    assert "/static/js/status-fallback.js" in page  # the gate: polls only while the socket is down

    # Not final yet: a normal answer, polling goes on.
    response = client.get(url, headers=HTMX)
    assert response.status_code == 200
    assert 'data-final="false"' in response.content.decode()

    # Final: 286, which tells htmx to stop polling; the fragment is still swapped in.
    Feedback.objects.filter(pk=feedback.pk).update(status="sent", version=7)
    response = client.get(url, headers=HTMX)
    assert response.status_code == 286
    html = response.content.decode()
    assert 'data-status="sent"' in html and 'data-version="7"' in html
    assert 'data-final="true"' in html

    # A page opened at a final state does not poll at all.
    article = re.search(r"<article[^>]*>", client.get(url).content.decode()).group(0)
    assert "hx-get" not in article and "hx-trigger" not in article


# -- The session's submissions, listed on the index -----------------------------------


def test_the_index_lists_this_sessions_submissions_newest_first_and_no_one_elses(client):
    for message in ["First", "Second"]:
        client.post("/", {"email": "ada@example.com", "message": message}, headers=HTMX)
    client.post("/", {"email": "ada@example.com", "message": "Third"})  # a plain form post too
    html = client.get("/").content.decode()
    cards = re.findall(r'<article class="submission" data-watch="feedback/([^"]+)"', html)
    assert len(cards) == 3
    messages = re.findall(r'<blockquote class="submission__message"[^>]*>([^<]*)<', html)
    assert messages == ["Third", "Second", "First"]
    shown = [feedback_id_from_token(token, session=client.session) for token in cards]
    assert shown == list(Feedback.objects.order_by("-created_at").values_list("pk", flat=True))
    assert html.count('data-status="queued"') == 3

    stranger = Client()
    html = stranger.get("/").content.decode()
    assert "data-watch" not in html and "First" not in html


def test_the_index_keeps_the_last_twenty_and_skips_a_deleted_one(client):
    for number in range(22):
        client.post("/", {"email": "ada@example.com", "message": f"n{number}"}, headers=HTMX)
    Feedback.objects.filter(message="n21").delete()
    html = client.get("/").content.decode()
    messages = re.findall(r'<blockquote class="submission__message"[^>]*>([^<]*)<', html)
    assert messages == [f"n{number}" for number in range(20, 1, -1)]


@pytest.mark.urls(__name__)
def test_a_sent_card_keeps_its_outbox_link_after_a_reload(client, settings):
    """The index renders each card from the same context as the answer to a submission."""
    settings.DEV_MAILBOX_IN_USE = True
    client.post("/", {"email": "ada@example.com", "message": "Hi"}, headers=HTMX)
    Feedback.objects.update(status="sent")
    html = client.get("/").content.decode()
    assert 'data-status="sent"' in html
    assert 'class="status__outbox"' in html


def test_an_htmx_submission_costs_five_statements(settings, monkeypatch):
    """The row and its event, the session (read, then saved under the key it keeps), and
    what the answer shows: the place in the queue (the timeline is the event just written)."""
    settings.FEEDBACK_RATE_LIMIT = None
    # The pace of the line is kept a second per process: a slow machine must not read it again.
    monkeypatch.setattr(selectors, "PACE_MAX_AGE", 60)
    browser = Client()
    data = {"email": "ada@example.com", "message": "First"}
    assert browser.post("/", data, headers=HTMX).status_code == 200  # the session exists
    with CaptureQueriesContext(connection) as captured:
        response = browser.post("/", {**data, "message": "Second"}, headers=HTMX)
    assert response.status_code == 200 and 'data-status="queued"' in response.content.decode()
    statements = [
        (query["sql"].split()[0], re.search(r"(?:FROM|INTO|UPDATE) (\w+)", sql)[1])
        for query in captured.captured_queries
        if not query["sql"].startswith(("SAVEPOINT", "RELEASE"))
        for sql in [query["sql"].replace('"', "")]
    ]
    assert statements == [
        ("SELECT", "django_session"),  # read first: a new session's key is cycled before the row
        ("INSERT", "feedback_feedback"),
        ("INSERT", "feedback_feedbackevent"),
        ("SELECT", "feedback_feedback"),  # the place in the queue (data-ahead)
        ("UPDATE", "django_session"),  # no new key: rotated once, with the watcher key
    ]
