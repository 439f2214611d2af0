"""A card speaks the language of the page that shows it, pushed frames included, while its
email speaks its submitter's (Chromium, real daphne, worker, Redis and SMTP server)."""

import re

import pytest
from playwright.sync_api import Page, expect

from feedback.models import Feedback

pytestmark = pytest.mark.django_db(transaction=True)

ENGLISH = {"locale": "en-US", "timezone_id": "UTC"}
PORTUGUESE = {"locale": "pt-BR", "timezone_id": "America/Sao_Paulo"}
# What the status badge and the timeline say, in each language.
BADGES = {
    "en": {"Queued", "Sending", "Sent"},
    "pt-br": {"Na fila", "Enviando", "Enviado"},
}
STATES = {"en": {"done", "now", "next"}, "pt-br": {"feito", "agora", "a seguir"}}


def send(page: Page, email: str, *, label: str, button: str) -> None:
    # The answer to the previous send replaces the form (empty): fill the one that stays.
    expect(page.get_by_role("button", name=re.compile(button))).to_be_enabled()
    page.get_by_label(label).fill(email)
    page.locator("#feedback-form textarea").fill("Hello there.")
    page.get_by_role("button", name=re.compile(button)).click()


def status_frames(page: Page) -> list[str]:
    """Every status frame the page's socket receives from now on."""
    frames: list[str] = []

    def on_socket(socket) -> None:
        def on_frame(payload) -> None:
            if isinstance(payload, str) and "data-status=" in payload:
                frames.append(payload)

        socket.on("framereceived", on_frame)

    page.on("websocket", on_socket)
    return frames


def test_an_english_card_reads_in_portuguese_after_a_switch_mid_send_and_mails_in_english(
    browser_page, start_daphne, start_worker, smtp_server
):
    env = {"FEEDBACK_SEND_DELAY": 6, "FEEDBACK_UNDO_SECONDS": 0}
    start_worker(**env)
    server = start_daphne(**env)
    page = browser_page
    page.goto(server.url)
    send(page, "ada@example.com", label="Your email address", button="With Celery")
    card = page.locator(".submission", has_text="ada@example.com")
    expect(card.locator(".status__badge")).to_have_text("Sending", timeout=30_000)

    # Mid-send, the page switches to Portuguese: it reloads, and opens a new socket.
    frames = status_frames(page)
    page.get_by_label("Language").select_option("pt-br")
    page.get_by_role("button", name="Change").click()
    expect(page.locator("html")).to_have_attribute("lang", "pt-br")
    page.evaluate("window.__same_page = true")
    card = page.locator(".submission", has_text="ada@example.com")
    # The reloaded card, still sending, in Portuguese: badge, note and timeline.
    expect(card.locator("[data-status]")).to_have_attribute("data-status", "sending")
    expect(card.locator(".status__badge")).to_have_text("Enviando")
    expect(card.locator(".status__line")).to_contain_text(
        re.compile(r"(Preparando sua confirmação|Conectando ao servidor|Entregando a mensagem)")
    )
    expect(card.locator(".timeline__step--queued")).to_contain_text("Na fila (feito)")
    expect(card.locator(".timeline__step--sending")).to_contain_text("Enviando (agora)")

    # `sent` arrives over the socket, on this very page, in Portuguese too.
    expect(card.locator(".status__badge")).to_have_text("Enviado", timeout=30_000)
    assert page.evaluate("window.__same_page") is True
    assert any('data-status="sent"' in frame for frame in frames)
    expect(card.locator(".status__line")).to_contain_text(
        "Confirmação enviada para ada@example.com."
    )
    expect(card.locator(".timeline__step--sending")).to_contain_text("Enviando (feito)")
    expect(card.locator(".timeline__step--sent")).to_contain_text("Enviado (feito)")

    # The email speaks the language it was submitted in.
    (email,) = smtp_server.wait_for(1)
    assert email.subject == "Thanks for your feedback"
    assert email.body.startswith("Hello,")
    assert Feedback.objects.get().language == "en"


def test_two_pages_in_two_languages_on_one_daphne_each_get_every_frame_in_their_own(
    browser_page, start_daphne, start_worker, smtp_server
):
    env = {"FEEDBACK_SEND_DELAY": 1.5, "FEEDBACK_UNDO_SECONDS": 0}
    start_worker(**env)
    server = start_daphne(**env)
    english = browser_page
    portuguese_context = english.context.browser.new_context(**PORTUGUESE)
    try:
        portuguese = portuguese_context.new_page()
        pages = {"en": english, "pt-br": portuguese}
        frames = {language: status_frames(page) for language, page in pages.items()}
        for page in pages.values():
            page.goto(server.url)
        # Both in the line at once, each page watching its own two cards.
        for number in range(2):
            send(english, f"en{number}@example.com", label="Your email address",
                 button="With Celery")  # fmt: skip
            send(portuguese, f"pt{number}@example.com", label="Seu endereço de e-mail",
                 button="Com Celery")  # fmt: skip
        for language, page in pages.items():
            badges = page.locator(".submission .status__badge")
            expect(badges).to_have_count(2)
            sent = "Sent" if language == "en" else "Enviado"
            for index in range(2):
                expect(badges.nth(index)).to_have_text(sent, timeout=60_000)
        smtp_server.wait_for(4)
    finally:
        portuguese_context.close()

    other = {"en": "pt-br", "pt-br": "en"}
    for language, received in frames.items():
        statuses = {re.search(r'data-status="(\w+)"', frame).group(1) for frame in received}
        assert {"sending", "sent"} <= statuses, language
        for frame in received:
            badge = re.search(r'class="status__badge">([^<]+)<', frame).group(1)
            assert badge in BADGES[language], (language, frame)
            shown = set(re.findall(r'class="timeline__label">([^<]+)<', frame))
            assert shown and shown <= BADGES[language], (language, frame)
            states = set(re.findall(r'class="timeline__state">\(([^<]+)\)<', frame))
            assert states and states <= STATES[language], (language, frame)
            assert not BADGES[other[language]] & (shown | {badge}), (language, frame)
