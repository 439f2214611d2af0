import pytest

from feedback.models import Feedback

pytestmark = pytest.mark.django_db


def test_resend_action_queues_failed_feedback_again_and_leaves_the_rest(
    admin_client, django_capture_on_commit_callbacks
):
    failed = Feedback.objects.create(
        email="a@example.com", message="Hi", status="failed", attempts=5
    )
    sent = Feedback.objects.create(email="b@example.com", message="Hi", status="sent", attempts=1)
    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_client.post(
            "/admin/feedback/feedback/",
            {"action": "resend", "_selected_action": [str(failed.pk), str(sent.pk)]},
            follow=True,
        )
    assert response.status_code == 200
    html = response.content.decode()
    assert "Queued 1 confirmation again." in html
    assert "Left 1 alone: only failed feedback can be resent." in html
    # One task, enqueued after the commit (and the move, published after it).
    assert len(callbacks) == 2
    failed.refresh_from_db()
    sent.refresh_from_db()
    assert (failed.status, failed.attempts) == ("queued", 0)
    assert sent.status == "sent"


def test_the_admin_filters_cancelled_feedback(admin_client):
    Feedback.objects.create(email="gone@example.com", message="Hi", status="cancelled")
    Feedback.objects.create(email="kept@example.com", message="Hi", status="sent")
    html = admin_client.get("/admin/feedback/feedback/").content.decode()
    assert "?status__exact=cancelled" in html
    listed = admin_client.get("/admin/feedback/feedback/?status__exact=cancelled").content.decode()
    assert "gone@example.com" in listed and "kept@example.com" not in listed
