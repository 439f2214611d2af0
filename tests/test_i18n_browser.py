"""The app in Chromium preferring Brazilian Portuguese, or English, and the language selector.

A pt-BR browser (Accept-Language and `navigator.language` from Playwright's locale) sees the
form, every status a card goes through (queued with its place and Undo, cancelled, sending,
sent, retrying, failed), the timeline, the Outbox, the rate limit and the error pages in
Portuguese, with times in its own time zone; the worker that sends runs in English.
"""

import re

import pytest
from playwright.sync_api import Page, expect

from feedback.models import Feedback

pytestmark = pytest.mark.django_db(transaction=True)

PORTUGUESE = {"locale": "pt-BR", "timezone_id": "America/Sao_Paulo"}


def send(page: Page, email: str, *, button: str = "Com Celery") -> None:
    page.get_by_label("Seu endereço de e-mail").fill(email)
    page.get_by_label("Mensagem").fill("A página nova ficou ótima.")
    page.get_by_role("button", name=re.compile(button)).click()


def card(page: Page, email: str):
    return page.locator(".submission", has_text=email)


@pytest.mark.parametrize("browser_context_options", [PORTUGUESE])
def test_a_portuguese_browser_sees_the_page_the_statuses_and_the_outbox_in_portuguese(
    browser_page, start_daphne, start_worker, dev_mailbox
):
    env = {
        **dev_mailbox[0],
        "FEEDBACK_SEND_DELAY": 1.5,
        "FEEDBACK_UNDO_SECONDS": 6,
        "FEEDBACK_RATE_LIMIT": "4/h",
    }
    start_worker(**env)
    server = start_daphne(**env)
    page = browser_page
    page.goto(server.url)
    expect(page.locator("html")).to_have_attribute("lang", "pt-br")
    expect(page.get_by_role("heading", level=1)).to_have_text("Mande seu feedback")
    expect(page.get_by_role("button", name=re.compile("Do jeito antigo"))).to_be_visible()
    expect(page.get_by_text("Quanto tempo o servidor levou para responder")).to_be_visible()

    # The server's own form error (the browser's checks off).
    page.locator("#feedback-form").evaluate("form => { form.noValidate = true }")
    page.get_by_label("Seu endereço de e-mail").fill("não é um endereço")
    page.get_by_role("button", name=re.compile("Com Celery")).click()
    expect(page.locator("#id_email_error")).to_have_text("Informe um endereço de e-mail válido.")
    expect(page.locator("#id_message_error")).to_have_text("Este campo é obrigatório.")

    # Undo, while it waits: the button, its countdown, then cancelled.
    send(page, "ana@example.com")
    ana = card(page, "ana@example.com")
    expect(ana.locator(".status__badge")).to_have_text("Na fila")
    expect(ana).to_contain_text("Esperando um worker começar o envio")
    expect(ana.locator(".status__countdown")).to_contain_text(re.compile(r"\d s para desfazer"))
    ana.get_by_role("button", name="Desfazer").click()
    expect(page.locator("#live .live__label")).to_have_text("Ao vivo")
    expect(ana.locator(".status__badge")).to_have_text("Cancelado")
    expect(ana).to_contain_text("Cancelado: nenhum e-mail foi enviado.")
    expect(ana.locator(".timeline")).to_have_attribute("aria-label", "Linha do tempo")
    expect(ana.locator(".timeline__step--cancelled")).to_contain_text("Cancelado (desfeito)")

    # Sent by the worker (English by default): every pushed state in Portuguese.
    send(page, "bia@example.com")
    bia = card(page, "bia@example.com")
    expect(bia).to_contain_text(re.compile(r"respondido em \d+ ms"))
    expect(bia.locator(".status__badge")).to_have_text("Enviando", timeout=30_000)
    expect(bia).to_contain_text(re.compile(r"(Preparando|Conectando|Entregando)"))
    # Queued behind it: its place (and, once a send was measured, about when).
    send(page, "caio@example.com")
    caio = card(page, "caio@example.com")
    expect(caio.locator(".status__place")).to_contain_text(re.compile(r"\d+ na sua frente"))
    expect(bia.locator(".status__badge")).to_have_text("Enviado", timeout=30_000)
    expect(bia).to_contain_text("Confirmação enviada para bia@example.com.")
    expect(bia.locator(".timeline__step--sent")).to_contain_text("Enviado (feito)")
    expect(bia.locator(".timeline__step--sent .timeline__time")).to_have_text(
        re.compile(r"^\+\d+(,\d\d s| ms)$")
    )
    expect(caio.locator(".status__badge")).to_have_text("Enviado", timeout=30_000)

    # The rate limit (4 an hour): the htmx answer is the form, with the reason, in Portuguese.
    send(page, "davi@example.com", button="Do jeito antigo")
    expect(card(page, "davi@example.com").locator(".status__badge")).to_have_text("Enviado")
    send(page, "eva@example.com")
    form = page.locator("#feedback-form")
    expect(form.locator(".errorlist")).to_contain_text(
        re.compile(r"Você enviou várias mensagens em pouco tempo\. Espere \d+ segundos?")
    )
    expect(form.get_by_label("Mensagem")).to_have_value("A página nova ficou ótima.")
    assert not Feedback.objects.filter(email="eva@example.com").exists()

    # The Outbox, and the email itself, in Portuguese.
    bia.get_by_role("link", name="Ver o e-mail na Caixa de saída").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Caixa de saída")
    mail = page.locator(".mail", has_text="bia@example.com")
    expect(mail.get_by_role("heading")).to_have_text("Obrigado pelo seu feedback")
    expect(mail.locator("dt").nth(2)).to_have_text("Recebido em")
    expect(mail.locator("time")).to_have_text(
        re.compile(r"^\d\d/\d\d/\d{4} \d\d:\d\d:\d\d America/Sao_Paulo$")
    )
    expect(mail.locator("pre")).to_contain_text("Olá,")
    expect(mail.locator("pre")).to_contain_text("obrigado pelo seu feedback.")


@pytest.mark.parametrize("browser_context_options", [PORTUGUESE])
def test_retrying_and_failed_read_in_portuguese_with_the_servers_own_words(
    browser_page, start_daphne, start_worker, smtp_server
):
    env = {
        "FEEDBACK_UNDO_SECONDS": 0,
        "FEEDBACK_MAX_ATTEMPTS": 2,
        # The retry waits 3 to 6 s (jitter): time to read the retrying card.
        "FEEDBACK_RETRY_BACKOFF": 6,
    }
    start_worker(**env)
    server = start_daphne(**env)
    smtp_server.fail_next(2, code=451, text="4.3.0 Try again later")
    page = browser_page
    page.goto(server.url)
    page.reload()  # the time zone cookie, set by the first load's script, now goes along
    send(page, "rui@example.com")
    rui = card(page, "rui@example.com")
    expect(rui.locator(".status__badge")).to_have_text("Tentando de novo", timeout=30_000)
    expect(rui).to_contain_text(
        "A tentativa 1 não deu certo: O servidor de e-mail recusou a mensagem: "
        "451 4.3.0 Try again later. É temporário: vamos tentar de novo."
    )
    expect(rui.locator(".status__retry")).to_have_text(
        re.compile(r"^Tentativa 2 às \d\d:\d\d:\d\d America/Sao_Paulo\.$")
    )
    expect(rui.get_by_role("button", name="Parar de tentar")).to_be_visible()
    expect(rui.locator(".status__badge")).to_have_text("Falhou", timeout=30_000)
    expect(rui).to_contain_text(
        "Não enviado: O servidor de e-mail recusou a mensagem: 451 4.3.0 Try again later. "
        "(desistimos depois de 2 tentativas)"
    )
    expect(rui.locator(".timeline__step--failed")).to_contain_text("Falhou (desistiu)")
    assert Feedback.objects.get().time_zone == "America/Sao_Paulo"


# DEBUG off, so a 404 is the app's own page, not Django's technical one.
PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "a-test-secret-that-is-long-enough-for-production-checks",
    "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
    "DJANGO_SECURE_SSL_REDIRECT": "0",  # plain HTTP on the loopback
    "DJANGO_SECURE_COOKIES": "0",
}


def test_an_english_browser_sees_english_and_the_selector_switches_and_keeps_it(
    browser_page, start_daphne
):
    server = start_daphne(**PRODUCTION)
    page = browser_page
    page.goto(server.url)
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("heading", level=1)).to_have_text("Send us feedback")
    expect(page.get_by_role("button", name=re.compile("With Celery"))).to_be_visible()

    page.get_by_label("Language").select_option("pt-br")
    page.get_by_role("button", name="Change").click()
    expect(page.locator("html")).to_have_attribute("lang", "pt-br")
    expect(page.get_by_role("heading", level=1)).to_have_text("Mande seu feedback")
    page.reload()
    expect(page.get_by_role("heading", level=1)).to_have_text("Mande seu feedback")
    page.goto(server.url + "/feedback/not-a-token/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Não tem nada aqui")

    page.goto(server.url)
    expect(page.get_by_label("Idioma")).to_have_value("pt-br")
    page.get_by_label("Idioma").select_option("en")
    page.get_by_role("button", name="Mudar").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Send us feedback")
    page.reload()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.goto(server.url + "/feedback/not-a-token/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Nothing here")

    # A browser that prefers Portuguese gets the error pages in Portuguese at once.
    portuguese = page.context.browser.new_context(**PORTUGUESE)
    try:
        other = portuguese.new_page()
        other.goto(server.url + "/feedback/not-a-token/")
        expect(other.locator("html")).to_have_attribute("lang", "pt-br")
        expect(other.get_by_role("heading", level=1)).to_have_text("Não tem nada aqui")
        expect(other.get_by_role("link")).to_have_text("Voltar ao formulário de feedback")
    finally:
        portuguese.close()
