"""The admin keeps the record: no edit, no add, no delete of a feedback still on its way;
what staff do is the table's by-hand moves through the services; the change page's card
is live, watched with a token bound to the staff member's own session."""

import re

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from playwright.sync_api import expect

from feedback import services
from feedback.models import Feedback, FeedbackEvent, Status
from feedback.moves import feedback_move
from feedback.tokens import feedback_id_from_token
from realtime.consumers import HEARTBEAT, REFUSED

pytestmark = pytest.mark.django_db

LIST = "/admin/feedback/feedback/"
PASSWORD = "a-long-password-1"


def change_url(feedback: Feedback) -> str:
    return f"{LIST}{feedback.pk}/change/"


def record(feedback: Feedback) -> dict:
    """Every column of the row as stored, and its timeline."""
    feedback = Feedback.objects.get(pk=feedback.pk)
    row = {field.attname: getattr(feedback, field.attname) for field in Feedback._meta.fields}
    return {**row, "events": list(feedback.events.values_list("status", "at"))}


def sent_feedback() -> Feedback:
    feedback = services.feedback_create(email="ada@example.com", message="Hi", enqueue=False)
    feedback_move("claim", feedback_id=feedback.pk, step="", claimed_by="worker1@host")
    return feedback_move("sent", feedback_id=feedback.pk)


def failed_feedback() -> Feedback:
    """Failed after its attempts (how it failed is the delivery's business, not the admin's)."""
    feedback = Feedback.objects.create(
        email="ada@example.com", message="Hi", status=Status.FAILED, attempts=5
    )
    FeedbackEvent.objects.create(feedback=feedback, status=Status.FAILED)
    return feedback


def test_resend_action_queues_failed_feedback_again_and_leaves_the_rest(
    admin_client, django_capture_on_commit_callbacks
):
    failed = Feedback.objects.create(
        email="a@example.com", message="Hi", status="failed", attempts=5
    )
    sent = Feedback.objects.create(email="b@example.com", message="Hi", status="sent", attempts=1)

    def resend(feedback: Feedback) -> str:
        response = admin_client.post(
            change_url(feedback),
            {"CHANGE_FORM-action": "resend", "_selected_action": str(feedback.pk)},
            follow=True,
        )
        assert response.status_code == 200
        return response.content.decode()

    with django_capture_on_commit_callbacks() as callbacks:
        assert "Queued 1 confirmation again." in resend(failed)
    assert "Left 1 alone: only failed feedback can be resent." in resend(sent)
    # On the list, a selection is resent by one background job (test_admin_jobs).
    listed = admin_client.get(LIST).content.decode()
    assert 'value="resend_selected"' in listed and 'value="resend"' not in listed
    # One task, enqueued after the commit (and the move, published after it, and the
    # queue-wide event: the row re-entered the line).
    assert len(callbacks) == 3
    failed.refresh_from_db()
    sent.refresh_from_db()
    assert (failed.status, failed.attempts) == ("queued", 0)
    assert sent.status == "sent"


def test_the_list_shows_the_badge_filters_by_status_and_language_and_searches_by_address(
    admin_client,
):
    Feedback.objects.create(email="gone@example.com", message="Hi", status="cancelled")
    Feedback.objects.create(email="kept@example.com", message="Hi", status="sent", language="pt-br")
    html = admin_client.get(LIST).content.decode()
    assert "?status__exact=cancelled" in html and "?language__exact=pt-br" in html
    # The card's own badge, from the status partial.
    assert re.search(
        r'<span class="status status--sent"><span class="status__badge">Sent</span></span>', html
    )
    listed = admin_client.get(f"{LIST}?status__exact=cancelled").content.decode()
    assert "gone@example.com" in listed and "kept@example.com" not in listed
    listed = admin_client.get(f"{LIST}?language__exact=pt-br").content.decode()
    assert "kept@example.com" in listed and "gone@example.com" not in listed
    listed = admin_client.get(f"{LIST}?q=gone%40example").content.decode()
    assert "gone@example.com" in listed and "kept@example.com" not in listed


def test_a_post_to_the_change_page_changes_nothing(admin_client):
    feedback = sent_feedback()
    before = record(feedback)
    assert before["claimed_by"] == "worker1@host"
    page = admin_client.get(change_url(feedback)).content.decode()
    assert 'name="email"' not in page and 'name="message"' not in page
    assert 'name="claimed_by"' not in page and 'name="_save"' not in page
    altered = {"email": "eve@example.com", "message": "Edited", "claimed_by": "nobody@nowhere"}
    for button in ("_save", "_continue", "_saveasnew", "_addanother"):
        response = admin_client.post(change_url(feedback), {**altered, button: "1"})
        assert response.status_code == 403, button
    # Nor with a move: the move is made, the fields posted with it are not.
    response = admin_client.post(
        change_url(feedback),
        {**altered, "CHANGE_FORM-action": "resend", "_selected_action": str(feedback.pk)},
        follow=True,
    )
    assert "Left 1 alone: only failed feedback can be resent." in response.content.decode()
    assert record(feedback) == before
    assert Feedback.objects.count() == 1


def test_the_add_page_is_refused(admin_client):
    assert admin_client.get(f"{LIST}add/").status_code == 403
    response = admin_client.post(f"{LIST}add/", {"email": "eve@example.com", "message": "Hi"})
    assert response.status_code == 403
    assert not Feedback.objects.exists()
    assert f"{LIST}add/" not in admin_client.get(LIST).content.decode()


def test_a_feedback_still_on_its_way_is_not_deleted(admin_client):
    queued = services.feedback_create(email="q@example.com", message="Hi", enqueue=False)
    sent = sent_feedback()
    assert admin_client.get(f"{LIST}{queued.pk}/delete/").status_code == 403
    assert admin_client.post(f"{LIST}{queued.pk}/delete/", {"post": "yes"}).status_code == 403
    # Selected together, the queued one refuses the lot.
    both = {"action": "delete_selected", "_selected_action": [str(queued.pk), str(sent.pk)]}
    assert admin_client.post(LIST, {**both, "post": "yes"}).status_code == 403
    assert Feedback.objects.count() == 2
    # A final one goes, with its timeline.
    response = admin_client.post(f"{LIST}{sent.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert list(Feedback.objects.all()) == [queued]
    assert not FeedbackEvent.objects.filter(feedback_id=sent.pk).exists()


def test_delete_leaves_a_row_that_is_no_longer_final():
    """The service checks again under a lock: a row resent since the page was drawn stays."""
    failed = failed_feedback()
    cancelled = services.feedback_create(email="c@example.com", message="Hi", enqueue=False)
    services.feedback_cancel(feedback_id=cancelled.pk)
    feedback_move("resend", feedback_id=failed.pk)
    assert services.feedback_delete(feedback_ids=[failed.pk, cancelled.pk]) == 1
    assert list(Feedback.objects.values_list("pk", "status")) == [(failed.pk, "queued")]


def test_cancel_from_the_change_page_with_the_public_pages_words(admin_client):
    waiting = services.feedback_create(
        email="w@example.com", message="Hi", enqueue=False, undo_seconds=60
    )
    sending = services.feedback_create(email="s@example.com", message="Hi", enqueue=False)
    feedback_move("claim", feedback_id=sending.pk, step="", claimed_by="worker1@host")

    def cancel(feedback: Feedback) -> str:
        response = admin_client.post(
            change_url(feedback),
            {"CHANGE_FORM-action": "cancel", "_selected_action": str(feedback.pk)},
            follow=True,
        )
        assert response.status_code == 200
        return response.content.decode()

    # The card's Undo button submits the page's cancel form, which names this action.
    page = admin_client.get(change_url(waiting)).content.decode()
    assert f'form="cancel-{waiting.pk}"' in page and f'id="cancel-{waiting.pk}"' in page
    assert "Cancelled: no email was sent." in cancel(waiting)
    assert "Too late to take it back: it is already sending." in cancel(sending)
    assert "Too late to take it back: it is already cancelled." in cancel(waiting)
    statuses = dict(Feedback.objects.values_list("pk", "status"))
    assert statuses == {waiting.pk: "cancelled", sending.pk: "sending"}


def test_the_change_page_shows_the_card_watched_with_a_token_of_this_session(
    admin_client, admin_user
):
    feedback = sent_feedback()
    page = admin_client.get(change_url(feedback)).content.decode()
    # Every field, its timeline, and the status card with its watch.
    for shown in ("ada@example.com", "worker1@host", str(feedback.pk)):
        assert shown in page
    for column in Feedback._meta.get_fields():
        if column.concrete:
            assert f"field-{column.name}" in page, column.name
    assert "<textarea" not in page and 'type="text"' not in page and 'type="email"' not in page
    assert f'id="status-{feedback.pk}"' in page and 'data-status="sent"' in page
    assert 'id="live"' in page and "js/live.js" in page
    token = re.search(r'data-watch="feedback/([^"]+)"', page).group(1)
    assert feedback_id_from_token(token, session=admin_client.session) == feedback.pk
    # Another session (the same staff member's other browser, too) cannot use it.
    other = Client()
    other.force_login(admin_user)
    assert feedback_id_from_token(token, session=other.session) is None


# -- In a browser, against daphne, a worker and Redis ------------------------------------


def log_in(page, url: str, next_path: str, username: str = "admin") -> None:
    page.goto(f"{url}/admin/login/?next={next_path}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{url}{next_path}")


def card_status(page):
    return page.locator("[data-watch] [data-status]")


@pytest.mark.django_db(transaction=True)
def test_resend_from_the_change_page_goes_queued_then_sent_live(
    browser_page, start_worker, start_daphne, smtp_server, django_user_model
):
    django_user_model.objects.create_superuser("admin", "admin@example.com", PASSWORD)
    failed = failed_feedback()
    # Slow enough that the page drawn after the resend shows it on its way.
    start_worker(FEEDBACK_SEND_DELAY=3)
    server = start_daphne()
    page = browser_page
    log_in(page, server.url, change_url(failed))
    expect(card_status(page)).to_have_attribute("data-status", "failed")

    page.select_option("select[name=CHANGE_FORM-action]", "resend")
    page.get_by_role("button", name="Run").click()
    expect(page.get_by_text("Queued 1 confirmation again.")).to_be_visible()
    page.evaluate("window.__same_page = true")
    assert card_status(page).get_attribute("data-status") in {"queued", "sending"}

    expect(card_status(page)).to_have_attribute("data-status", "sent", timeout=30_000)
    assert page.evaluate("window.__same_page") is True
    expect(page.locator("#live")).to_have_text("Live")
    assert len(smtp_server.wait_for(1)) == 1
    steps = list(failed.events.values_list("status", flat=True))
    assert steps == ["failed", "queued", "sending", "sent"]


WATCH_ONCE = """async ([path, token]) => {
  const socket = new WebSocket(`ws://${location.host}${path}`);
  await new Promise((opened) => socket.addEventListener("open", opened));
  const answer = new Promise((answered) => socket.addEventListener("message", (event) => {
    if (event.data !== HEARTBEAT) answered(String(event.data));
  }));
  socket.send(`watch feedback/${token}`);
  const text = await answer;
  socket.close();
  return text;
}"""


@pytest.mark.django_db(transaction=True)
def test_a_non_staff_session_cannot_watch_what_the_admin_page_watches(
    browser_page, start_worker, start_daphne, smtp_server, django_user_model
):
    django_user_model.objects.create_superuser("admin", "admin@example.com", PASSWORD)
    theirs = services.feedback_create(
        email="ada@example.com", message="Not yours", enqueue=False, undo_seconds=600
    )
    start_worker()
    server = start_daphne()
    staff = browser_page
    log_in(staff, server.url, change_url(theirs))
    token = staff.locator("[data-watch]").get_attribute("data-watch").removeprefix("feedback/")
    expect(staff.locator("#live")).to_have_text("Live")  # the staff session watches it

    # Another browser, a visitor with a feedback of their own, the admin's page still open.
    visitor = staff.context.browser.new_context(locale="en-US", timezone_id="UTC").new_page()
    visitor.goto(server.url)
    visitor.get_by_label("Your email address").fill("bob@example.com")
    visitor.get_by_label("Message").fill("Mine")
    visitor.get_by_role("button", name=re.compile("With Celery")).click()
    mine = visitor.locator("#submissions [data-watch] [data-status]")
    expect(mine).to_have_attribute("data-status", "sent", timeout=30_000)  # its own: watched

    watch = WATCH_ONCE.replace("HEARTBEAT", repr(HEARTBEAT))
    path = staff.locator("#live").get_attribute("data-live-path")
    assert visitor.evaluate(watch, [path, token]) == f"{REFUSED} feedback/{token}"
    # The same token in the staff session still gets the card.
    assert f'id="status-{theirs.pk}"' in staff.evaluate(watch, [path, token])
    # Nor does the visitor get into the admin or the status page with it.
    visitor.goto(f"{server.url}{change_url(theirs)}")
    assert "/admin/login/" in visitor.url
    assert visitor.goto(f"{server.url}/feedback/{token}/").status == 404
    visitor.context.close()


@pytest.mark.django_db(transaction=True)
def test_the_cards_undo_button_cancels_from_the_change_page(
    browser_page, start_daphne, django_user_model
):
    django_user_model.objects.create_superuser("admin", "admin@example.com", PASSWORD)
    waiting = services.feedback_create(
        email="ada@example.com", message="Hi", enqueue=False, undo_seconds=600
    )
    server = start_daphne()
    page = browser_page
    log_in(page, server.url, change_url(waiting))
    page.locator("[data-watch]").get_by_role("button", name="Undo").click()
    expect(page.get_by_text("Cancelled: no email was sent.").first).to_be_visible()
    expect(card_status(page)).to_have_attribute("data-status", "cancelled")
    waiting.refresh_from_db()
    assert waiting.status == "cancelled"


STATUS_POLL = re.compile(r"^https?://[^/]+/feedback/[^/]+/$")  # the public status URL


@pytest.mark.django_db(transaction=True)
def test_the_change_pages_card_is_polled_while_its_socket_is_down_and_only_then(
    browser_page, start_daphne, django_user_model
):
    django_user_model.objects.create_superuser("admin", "admin@example.com", PASSWORD)
    waiting = services.feedback_create(
        email="ada@example.com", message="Hi", enqueue=False, undo_seconds=600
    )
    server = start_daphne()
    page = browser_page
    sockets = {"cut": False, "open": []}

    def on_socket(ws):
        if sockets["cut"]:
            ws.close(code=1012)  # daphne "restarting": the page polls meanwhile
        else:
            ws.connect_to_server()
            sockets["open"].append(ws)

    page.route_web_socket(re.compile(r".*/ws/watch/.*"), on_socket)
    polls: list[str] = []
    page.on("request", lambda request: STATUS_POLL.match(request.url) and polls.append(request.url))
    log_in(page, server.url, change_url(waiting))
    expect(page.locator("#live")).to_have_text("Live")
    page.wait_for_timeout(4_500)  # more than two poll periods
    assert polls == [], "polled while the socket was up"

    sockets["cut"] = True
    for ws in sockets["open"]:
        ws.close(code=1006)
    expect(page.locator("#live")).not_to_have_text("Live")
    # A move the socket cannot carry: only a poll can bring it.
    assert services.feedback_cancel(feedback_id=waiting.pk) is not None
    expect(card_status(page)).to_have_attribute("data-status", "cancelled", timeout=15_000)
    assert polls, "the card changed, but not by polling"
    count = len(polls)
    page.wait_for_timeout(4_500)
    assert len(polls) == count, "polled past the final state"


def test_staff_who_may_only_view_make_no_move(client, django_user_model):
    viewer = django_user_model.objects.create_user("viewer", password=PASSWORD, is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_feedback"))
    client.force_login(viewer)
    waiting = services.feedback_create(
        email="w@example.com", message="Hi", enqueue=False, undo_seconds=60
    )
    failed = failed_feedback()
    assert client.get(change_url(waiting)).status_code == 200
    for feedback, action in ((waiting, "cancel"), (failed, "resend")):
        client.post(
            change_url(feedback),
            {"CHANGE_FORM-action": action, "_selected_action": str(feedback.pk)},
        )
    client.post(LIST, {"action": "resend_selected", "_selected_action": [str(failed.pk)]})
    statuses = dict(Feedback.objects.values_list("pk", "status"))
    assert statuses == {waiting.pk: "queued", failed.pk: "failed"}
