"""Hostile input: header injection, markup, control characters, odd Unicode, huge bodies.

Every case gets a clear answer (a form error or a plain error page), nothing
invalid is stored, and what is stored is shown escaped on the page and in the
admin and arrives verbatim, as plain text, in the email over real SMTP.
"""

import re

import httpx
import pytest

from feedback import services
from feedback.models import Feedback
from feedback.tasks import send_feedback_email

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}

HEADER_INJECTIONS = [
    "ada@example.com\r\nBcc: evil@example.com",
    "ada@example.com\nBcc: evil@example.com",
    "ada@example.com\rBcc: evil@example.com",
    "ada@example.com\n",  # a bare trailing line break is not trimmed away either
    "\r\nada@example.com",
    "ada@example.com%0d%0aBcc:evil@example.com",  # already-encoded: simply not an address
    "ada@exam\x00ple.com",
    "ada\x0b@example.com",
    "ada@example.com\x85Bcc: evil@example.com",  # NEL
    "ada@example.com\u2028Bcc: evil@example.com",  # LINE SEPARATOR
    "ada\u200b@example.com",  # zero-width space
    "ada@example.com\u202e",  # right-to-left override
    "ada@example.com, evil@example.com",
    "ada@example.com>\r\nBcc: <evil@example.com",
]

MARKUP = '<script>alert("x")</script><img src=x onerror=alert(1)> & "quotes" \'single\''

ODD_UNICODE = [
    "👩‍💻 family: 👨‍👩‍👧‍👦, flags: 🇫🇷🇯🇵, skin: 👍🏽",
    "مرحبا بالعالم — Hebrew: שלום — mixed ‏RTL‎ marks",
    "Z̷a̴l̵g̶o̷ t̸e̵x̶t̷ and combining e\u0301",
    "漢字かなカナ한국어 and astral 𝕳𝖊𝖑𝖑𝖔 𓀀",
    "tabs\tand\r\nWindows\rold Mac\nUnix line breaks",
    "\ufeffbyte order mark and \u00a0no-break space and soft\u00adhyphen",
    "x" * 2000,
]


@pytest.fixture
def smtp_mail(settings, smtp_server):
    """Django's mail goes to the real SMTP server of the `smtp_server` fixture."""
    settings.FEEDBACK_SEND_DELAY = 0
    settings.MAILERS = {
        "default": {
            "BACKEND": "feedback.smtp.EmailBackend",
            "OPTIONS": {"host": smtp_server.host, "port": smtp_server.port, "timeout": 10},
        }
    }
    return smtp_server


@pytest.mark.parametrize("email", HEADER_INJECTIONS)
def test_header_injection_in_the_email_is_a_form_error(client, email):
    response = client.post("/", {"email": email, "message": "Hi"}, headers=HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert re.search(r"cannot contain line breaks|Enter a valid email address", html)
    assert not Feedback.objects.exists()


def test_an_injected_header_never_reaches_the_smtp_server(smtp_mail):
    # A row that got past the form some other way (an old version, a script).
    hostile = Feedback.objects.create(
        email="ada@example.com\r\nBcc: evil@example.com\r\nSubject: pwned", message="Hi"
    )
    fine = Feedback.objects.create(email="bob@example.com", message="Hi")
    send_feedback_email(str(hostile.pk))
    send_feedback_email(str(fine.pk))

    received = smtp_mail.wait_for(1)
    assert [message.rcpt_tos for message in received] == [["bob@example.com"]]
    assert not smtp_mail.refusals
    for message in received:
        assert b"evil@example.com" not in message.raw and b"pwned" not in message.raw
    hostile.refresh_from_db()
    assert hostile.status == Feedback.Status.FAILED
    assert hostile.failure_text == (
        "The email address cannot be used. This is permanent: it will not be tried again."
    )


def test_markup_is_escaped_on_the_page_and_in_the_admin(client, admin_client):
    response = client.post("/", {"email": "ada@example.com", "message": MARKUP})
    feedback = Feedback.objects.get()
    assert feedback.message == MARKUP  # stored as written
    escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"
    for html in [
        client.get(response["Location"]).content.decode(),
        admin_client.get(f"/admin/feedback/feedback/{feedback.pk}/change/").content.decode(),
    ]:
        assert escaped in html
        assert "<script>alert" not in html and "<img src=x" not in html


def test_markup_arrives_verbatim_as_plain_text_and_escaped_in_the_html_part(smtp_mail):
    feedback = services.feedback_create(email="ada@example.com", message=MARKUP, enqueue=False)
    send_feedback_email(str(feedback.pk))
    (received,) = smtp_mail.wait_for(1)
    assert received.message.get_content_type() == "multipart/alternative"
    plain = received.message.get_body(preferencelist=("plain",)).get_content()
    html = received.message.get_body(preferencelist=("html",)).get_content()
    assert f"> {MARKUP}" in plain
    assert "&lt;" not in plain
    escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"
    assert escaped in html
    assert "<script" not in html and "<img" not in html  # nothing runs, nothing is fetched
    assert "http://" not in html and "https://" not in html  # no remote resources


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("nul\x00byte", "Null characters are not allowed."),
        ("bell\x07", "control characters"),
        ("escape \x1b[31mred", "control characters"),
        ("c1 \x9b control", "control characters"),
        ("lone surrogate \ud800", "control characters"),
        ("", "This field is required."),
        ("   \n\t  ", "This field is required."),
        ("x" * 2001, "Ensure this value has at most 2000 characters"),
    ],
    ids=["nul", "bell", "ansi-escape", "c1", "surrogate", "empty", "blank", "too-long"],
)
def test_unusable_messages_are_form_errors(client, message, error):
    from feedback.forms import FeedbackForm

    form = FeedbackForm(data={"email": "ada@example.com", "message": message})
    assert not form.is_valid()
    assert error in str(form.errors["message"])
    if "\ud800" not in message:  # an HTTP body cannot even carry a lone surrogate
        response = client.post("/", {"email": "ada@example.com", "message": message}, headers=HTMX)
        assert response.status_code == 200 and error in response.content.decode()
    assert not Feedback.objects.exists()


@pytest.mark.parametrize("message", ODD_UNICODE, ids=lambda m: m[:12])
def test_odd_unicode_is_stored_shown_and_mailed_as_written(client, smtp_mail, message):
    response = client.post("/", {"email": "ada@example.com", "message": message})
    assert response.status_code == 303
    feedback = Feedback.objects.get()
    assert feedback.message == message.strip()
    page = client.get(response["Location"]).content.decode()
    first_line = message.strip().splitlines()[0]
    assert first_line.replace("&", "&amp;") in page
    send_feedback_email(str(feedback.pk))
    (received,) = smtp_mail.wait_for(1)
    assert f"> {first_line}" in received.body


def test_an_internationalised_domain_is_accepted_and_mailed(client, smtp_mail):
    response = client.post("/", {"email": "ada@exämple.com", "message": "Hi"})
    assert response.status_code == 303
    feedback = Feedback.objects.get()
    send_feedback_email(str(feedback.pk))
    (received,) = smtp_mail.wait_for(1)
    assert received.rcpt_tos == ["ada@xn--exmple-cua.com"]


@pytest.mark.django_db(transaction=True)
def test_a_5_mb_body_through_daphne_is_a_413(start_daphne):
    daphne = start_daphne()
    with httpx.Client(base_url=daphne.url, timeout=60) as browser:
        csrf = re.search(
            r'name="csrfmiddlewaretoken" value="([^"]+)"', browser.get("/").text
        ).group(1)
        data = {
            "email": "ada@example.com",
            "message": "x" * (5 * 1024 * 1024),
            "csrfmiddlewaretoken": csrf,
        }
        response = browser.post("/", data=data)
        assert response.status_code == 413
        assert "That was too much to send" in response.text and "Traceback" not in response.text
        response = browser.post("/", data=data, headers=HTMX)  # htmx swaps a 413 too (base.html)
        assert response.status_code == 413
    assert not Feedback.objects.exists()
