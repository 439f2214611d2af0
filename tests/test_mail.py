"""The send path against real SMTP servers (aiosmtpd) that Postfix cannot easily play:
no 8BITMIME, no SMTPUTF8, a refusal at DATA, a server that hangs up after 250.
Also the email itself (parts, quoting, IDNA) and the form's addresses."""

import email
import email.policy
import logging
import time

import pytest
from celery.exceptions import Retry
from django.template.loader import render_to_string
from django.urls import include, path

from devtools.ports import free_port
from devtools.smtp_sink import SmtpSink
from feedback import services
from feedback.forms import FeedbackForm
from feedback.mail import DeliveryError, build_confirmation_email, message_id_domain
from feedback.models import Feedback
from feedback.selectors import feedback_status_context
from feedback.smtp import SMTP_POLICY, describe_send_error, server_text
from feedback.tasks import send_feedback_email

pytestmark = pytest.mark.django_db

UNICODE = "Olá! Größe, 東京 🎉\nA second line\u2028with a line separator inside\n.\nFrom me"


def options(sink: SmtpSink) -> list[list[str]]:
    """MAIL FROM parameters but SIZE (smtplib adds it whenever the server offers SIZE)."""
    return [[o for o in given if not o.startswith("SIZE=")] for given in sink.mail_options]


def use(settings, sink: SmtpSink) -> None:
    settings.MAILERS = {
        "default": {
            "BACKEND": "feedback.smtp.EmailBackend",
            "OPTIONS": {"host": sink.host, "port": sink.port, "timeout": 5},
        }
    }
    settings.FEEDBACK_SEND_DELAY = 0


@pytest.fixture
def sink_factory(settings):
    sinks = []

    def start(**kwargs) -> SmtpSink:
        sink = SmtpSink(**kwargs).start()
        sinks.append(sink)
        use(settings, sink)
        return sink

    yield start
    for sink in sinks:
        sink.stop()


def feedback(email="ada@example.com", message=UNICODE) -> Feedback:
    return services.feedback_create(email=email, message=message, enqueue=False)


def plain_text(received) -> str:
    part = received.message.get_body(preferencelist=("plain",))
    return part.get_content().replace("\r\n", "\n")


def quoted(message: str) -> str:
    return "\n".join(f"> {line}" for line in message.split("\n"))


# -- 8-bit bodies ------------------------------------------------------------------


def test_an_8bit_body_is_declared_with_body_8bitmime_when_offered(sink_factory):
    sink = sink_factory()
    row = feedback()
    send_feedback_email(str(row.pk))
    [received] = sink.wait_for(1)
    assert options(sink) == [["BODY=8BITMIME"]]
    assert "Olá! Größe, 東京 🎉".encode() in received.raw  # 8-bit, as declared
    assert quoted(UNICODE) in plain_text(received)


def test_without_8bitmime_the_body_is_7bit_clean_and_arrives_exactly(sink_factory):
    sink = sink_factory(eight_bit=False)
    row = feedback()
    send_feedback_email(str(row.pk))
    [received] = sink.wait_for(1)
    assert options(sink) == [[]]  # no BODY=8BITMIME to a server that did not offer it
    assert max(received.raw) < 128  # every byte 7-bit
    assert b"Content-Transfer-Encoding: 8bit" not in received.raw
    assert quoted(UNICODE) in plain_text(received)
    html = received.message.get_body(preferencelist=("html",)).get_content()
    assert "Olá! Größe, 東京 🎉" in html
    row.refresh_from_db()
    assert row.status == Feedback.Status.SENT


# -- Internationalised addresses (RFC 6531) -----------------------------------------------


def test_a_non_ascii_local_part_is_sent_with_smtputf8_when_offered(sink_factory):
    sink = sink_factory()
    row = feedback(email="usuário@straße.de")
    send_feedback_email(str(row.pk))
    [received] = sink.wait_for(1)
    assert received.rcpt_tos == ["usuário@xn--strae-oqa.de"]  # IDNA 2008, not strasse.de
    assert options(sink) == [["SMTPUTF8", "BODY=8BITMIME"]]
    assert str(received.message["To"]) == "usuário@xn--strae-oqa.de"


def test_without_smtputf8_a_non_ascii_local_part_fails_at_once_saying_why(sink_factory):
    sink = sink_factory(smtputf8=False)
    row = feedback(email="usuário@example.com.br")
    send_feedback_email(str(row.pk))
    row.refresh_from_db()
    assert row.status == Feedback.Status.FAILED
    assert row.attempts == 1
    assert row.failure_text == (
        "The address has non-ASCII characters before the @, and the mail server does not "
        "accept such addresses (no SMTPUTF8). This is permanent: it will not be tried again."
    )
    assert sink.messages == [] and sink.mail_options == []  # never even MAIL FROM
    # An ASCII address (with a Unicode domain) still goes out to that server.
    other = feedback(email="ada@straße.de")
    send_feedback_email(str(other.pk))
    [received] = sink.wait_for(1)
    assert received.rcpt_tos == ["ada@xn--strae-oqa.de"]


# -- Refusals and hang-ups ---------------------------------------------------------------


def test_a_refusal_at_data_names_the_code_and_the_cleaned_text(sink_factory, caplog):
    sink = sink_factory()
    noisy = "5.7.1 Message \x1b[31mrejected\x07 as spam " + "x" * 400
    sink.fail_next(1, code=554, text=noisy, stage="DATA")
    row = feedback()
    with caplog.at_level(logging.WARNING, logger="feedback.mail"):
        send_feedback_email(str(row.pk))
    row.refresh_from_db()
    assert row.status == Feedback.Status.FAILED
    assert row.failure_text.startswith(
        "The mail server refused the message: 554 5.7.1 Message [31mrejected as spam xxx"
    )
    assert "\x1b" not in row.failure_text and "\x07" not in row.failure_text
    assert "…" in row.failure_text and len(row.failure_text) < 320  # shortened
    assert row.failure_text.endswith("This is permanent: it will not be tried again.")
    [record] = [r for r in caplog.records if str(row.pk) in r.getMessage()]
    assert "attempt 1 failed: code=554 text='5.7.1 Message" in record.getMessage()
    assert record.getMessage().endswith("; final")


def test_a_4xx_at_data_is_retried_and_the_card_says_so(sink_factory, caplog):
    sink = sink_factory()
    sink.fail_next(1, code=452, text="4.3.1 Insufficient system storage", stage="DATA")
    row = feedback()
    with caplog.at_level(logging.WARNING, logger="feedback.mail"), pytest.raises(Retry):
        send_feedback_email(str(row.pk))
    row.refresh_from_db()
    assert row.status == Feedback.Status.RETRYING
    html = render_to_string("feedback/detail.html#status", feedback_status_context(feedback=row))
    assert (
        "The mail server refused the message: 452 4.3.1 Insufficient system storage. "
        "This is temporary: it will be tried again." in html
    )
    assert "will retry" in caplog.records[-1].getMessage()
    send_feedback_email(str(row.pk))  # the retry
    assert len(sink.wait_for(1)) == 1


def test_a_server_that_hangs_up_after_250_to_data_counts_as_sent_once(sink_factory):
    sink = sink_factory()
    sink.drop_after("DATA")
    row = feedback()
    send_feedback_email(str(row.pk))
    row.refresh_from_db()
    assert (row.status, row.attempts) == (Feedback.Status.SENT, 1)
    assert len(sink.wait_for(1)) == 1


def test_a_server_that_hangs_up_after_250_to_mail_is_retried_then_sent_once(sink_factory):
    sink = sink_factory()
    sink.drop_after("MAIL")
    row = feedback()
    with pytest.raises(Retry):
        send_feedback_email(str(row.pk))
    row.refresh_from_db()
    assert row.status == Feedback.Status.RETRYING
    assert row.failure_text == (
        "The mail server closed the connection. This is temporary: it will be tried again."
    )
    assert sink.messages == []
    send_feedback_email(str(row.pk))
    row.refresh_from_db()
    assert row.status == Feedback.Status.SENT
    assert len(sink.wait_for(1)) == 1


# -- One connection per worker process ------------------------------------------------------


def test_emails_one_after_another_go_over_one_connection(sink_factory):
    sink = sink_factory()
    rows = [feedback(email=f"n{n}@example.com", message="Hi") for n in range(5)]
    for row in rows:
        send_feedback_email(str(row.pk))
    assert len(sink.wait_for(5)) == 5
    assert len(sink.peers) == 5 and len(set(sink.peers)) == 1  # one client port: one connection
    assert {row.status for row in Feedback.objects.filter(pk__in=[r.pk for r in rows])} == {
        Feedback.Status.SENT
    }


def test_a_connection_the_server_closed_is_reopened_and_costs_no_attempt(sink_factory):
    """The server hangs up right after its 250 (or its idle timeout ends the kept
    connection): that email counts as sent, and the next goes over a new connection."""
    sink = sink_factory()
    sink.drop_after("DATA")
    first, second = feedback(email="a@example.com"), feedback(email="b@example.com")
    send_feedback_email(str(first.pk))
    sink.wait_for(1)
    time.sleep(0.2)  # the server's close has reached us
    send_feedback_email(str(second.pk))
    assert len(sink.wait_for(2)) == 2
    for row in (first, second):
        row.refresh_from_db()
        assert (row.status, row.attempts) == (Feedback.Status.SENT, 1)
    assert len(set(sink.peers)) == 2


def test_a_failed_send_drops_the_kept_connection(sink_factory):
    sink = sink_factory()
    sink.fail_next(1, code=452, text="4.3.1 Insufficient system storage", stage="DATA")
    first, second = feedback(email="a@example.com"), feedback(email="b@example.com")
    with pytest.raises(Retry):
        send_feedback_email(str(first.pk))
    send_feedback_email(str(second.pk))
    assert [m.rcpt_tos for m in sink.wait_for(1)] == [["b@example.com"]]
    assert len(set(sink.peers)) == 2  # the refused one's connection was not used again


def test_a_restarted_mail_server_is_reconnected_to(settings):
    port = free_port()
    first_sink = SmtpSink(port=port).start()
    use(settings, first_sink)
    first, second = feedback(email="a@example.com"), feedback(email="b@example.com")
    try:
        send_feedback_email(str(first.pk))
        first_sink.wait_for(1)
    finally:
        first_sink.stop()
    second_sink = SmtpSink(port=port).start()  # same address: only the connection is stale
    try:
        send_feedback_email(str(second.pk))
        assert [m.rcpt_tos for m in second_sink.wait_for(1)] == [["b@example.com"]]
    finally:
        second_sink.stop()
    second.refresh_from_db()
    assert (second.status, second.attempts) == (Feedback.Status.SENT, 1)


def test_a_refusal_at_connect_names_the_server_answer():
    import smtplib

    error = smtplib.SMTPConnectError(554, b"5.3.2 No SMTP service here\r\nGo away")
    assert DeliveryError(describe_send_error(error), cause=error).reason_for(
        retrying=False
    ).text == (
        "The mail server refused the connection: 554 5.3.2 No SMTP service here Go away. "
        "This is permanent: it will not be tried again."
    )
    assert server_text("a\r\nb\x00c\u202ed") == "a b c d"


# -- The email ------------------------------------------------------------------------


def test_ehlo_name_and_message_id_domain_come_from_settings(sink_factory, settings):
    sink = sink_factory()
    settings.EMAIL_HELO_NAME = "mail.feedback.example"
    settings.EMAIL_MESSAGE_ID_DOMAIN = "ids.feedback.example"
    row = feedback()
    send_feedback_email(str(row.pk))
    [received] = sink.wait_for(1)
    assert sink.helo_names == ["mail.feedback.example"]
    # (A long one is folded onto the next line: the leading space is that fold.)
    assert received.message["Message-ID"].strip() == f"<feedback-{row.pk}@ids.feedback.example>"


def test_the_email_is_multipart_alternative_and_only_real_line_breaks_split_the_quote():
    row = Feedback(email="ada@example.com", message="one\u2028still one\u2029and one\r\ntwo\rthree")
    message = build_confirmation_email(feedback=row)
    assert "> one\u2028still one\u2029and one\n> two\n> three" in message.body
    [(html, mimetype)] = message.alternatives
    assert mimetype == "text/html"
    assert "one\u2028still one\u2029and one<br>two<br>three" in html
    assert "src=" not in html and "http" not in html.split("<body", 1)[1]  # nothing remote


def test_headers_every_confirmation_repeats_are_parsed_once_and_each_keeps_its_own():
    ada = Feedback(email="ada@example.com", message="Hi", language="en")
    ana = Feedback(email="ana@example.com.br", message="Oi", language="pt-br")
    rows = (ada, ana, ada)
    built = [build_confirmation_email(feedback=row).message(policy=SMTP_POLICY) for row in rows]
    # Parsed once (feedback/smtp.py's header factory): the very same header object.
    assert built[0]["From"] is built[1]["From"] is built[2]["From"]
    assert built[0]["Subject"] is built[2]["Subject"]
    assert built[0]["Subject"] != built[1]["Subject"]  # each in its language
    for row, message in zip(rows, built, strict=True):
        # As a receiver parses it afresh: its own recipient, Message-ID and parts.
        wire = email.message_from_bytes(message.as_bytes(), policy=email.policy.SMTP)
        assert wire["To"] == row.email
        assert wire["Message-ID"] == f"<feedback-{row.pk}@{message_id_domain()}>"
        assert wire["From"] == message["From"] and wire["Subject"] == message["Subject"]
        assert wire.get_boundary() == message.get_boundary()  # set as it was written
        assert [part.get_content_type() for part in wire.iter_parts()] == [
            "text/plain", "text/html"
        ]  # fmt: skip
        assert (
            wire.get_body(preferencelist=("plain",))
            .get_content()
            .startswith(build_confirmation_email(feedback=row).body.split("\n")[0])
        )


# -- The form ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "email", ["usuário@example.com.br", "ada@straße.de", "用户@例子.中国", "ada@example.com"]
)
def test_the_form_accepts_international_addresses_as_typed(email):
    form = FeedbackForm({"email": email, "message": "hi"})
    assert form.is_valid(), form.errors
    assert form.cleaned_data["email"] == email


@pytest.mark.parametrize(
    ("email", "error"),
    [
        ("ada@❤.com", "cannot be used in an email address (IDNA 2008)"),
        ("ada@xn--zz.com", "cannot be used in an email address (IDNA 2008)"),
        ("us\u00a0er@example.com", "Enter a valid email address."),
        ("us\u200ber@example.com", "control characters"),
        ("a..b@example.com", "Enter a valid email address."),
        ("ada@example.com\r\nBcc: x@example.com", "control characters"),
    ],
)
def test_the_form_refuses_addresses_that_cannot_be_mailed(client, email, error):
    response = client.post("/", {"email": email, "message": "hi"})
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not Feedback.objects.exists()


# -- The Outbox link ------------------------------------------------------------------


# Tests run with DEBUG off, so the Outbox is not routed by the project's URLs.
urlpatterns = [
    path("outbox/", include("outbox.urls")),
    path("", include("feedback.urls")),
]


@pytest.mark.urls(__name__)
@pytest.mark.parametrize(("in_use", "linked"), [(True, True), (False, False)])
def test_a_sent_card_links_the_outbox_only_with_the_local_mailbox(settings, in_use, linked):
    settings.DEV_MAILBOX_IN_USE = in_use
    row = Feedback.objects.create(email="ada@example.com", message="hi", status="sent")
    html = render_to_string("feedback/detail.html#status", feedback_status_context(feedback=row))
    assert ("See the email in the Outbox" in html) is linked


@pytest.mark.urls(__name__)
def test_the_outbox_shows_the_plain_text_and_the_sandboxed_html_version(client, settings, tmp_path):
    from devtools.ports import free_port
    from outbox.mailbox import serve

    settings.DEV_MAILBOX = tmp_path / "mailbox.jsonl"
    controller = serve(host="127.0.0.1", port=free_port(), path=settings.DEV_MAILBOX)
    try:
        settings.MAILERS = {
            "default": {
                "BACKEND": "feedback.smtp.EmailBackend",
                "OPTIONS": {"host": "127.0.0.1", "port": controller.port, "timeout": 5},
            }
        }
        settings.FEEDBACK_SEND_DELAY = 0
        row = feedback(message="<b>bold?</b> Olá")
        send_feedback_email(str(row.pk))
    finally:
        controller.stop()
    page = client.get("/outbox/").content.decode()
    assert "&gt; &lt;b&gt;bold?&lt;/b&gt; Olá" in page  # the plain text, escaped
    html_url = f"/outbox/feedback-{row.pk}/html/"
    assert html_url in page
    response = client.get(html_url)
    assert response.status_code == 200
    assert response["Content-Security-Policy"].startswith("sandbox; default-src 'none'")
    body = response.content.decode()
    assert "&lt;b&gt;bold?&lt;/b&gt; Olá" in body and "<b>bold" not in body
    assert client.get("/outbox/feedback-nope/html/").status_code == 404
