"""Accessibility in a real browser: axe-core finds nothing serious, the keyboard does it all.

axe-core is vendored under tests/vendor (from the npm registry) and injected by
the test; the app never loads it.
"""

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.django_db(transaction=True)

AXE = Path(__file__).parent / "vendor" / "axe-core-4.14.1" / "axe.min.js"


def serious_violations(page: Page) -> list[dict]:
    # evaluate() runs over the DevTools protocol, not as a page script, so the
    # app's Content-Security-Policy (no inline scripts) does not stop it.
    page.evaluate(AXE.read_text())
    results = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [
        {
            "id": violation["id"],
            "impact": violation["impact"],
            "help": violation["help"],
            "nodes": [node["html"][:200] for node in violation["nodes"]],
        }
        for violation in results["violations"]
        if violation["impact"] in ("serious", "critical")
    ]


# The page's words in each language the app speaks (the check runs in both).
WORDS = {
    "en-US": {
        "email": "Your email address",
        "message": "Message",
        "celery": "With Celery",
        "old way": "The old way",
        "status page": "Status page",
        "outbox": "Outbox",
    },
    "pt-BR": {
        "email": "Seu endereço de e-mail",
        "message": "Mensagem",
        "celery": "Com Celery",
        "old way": "Do jeito antigo",
        "status page": "Página de status",
        "outbox": "Caixa de saída",
    },
}


@pytest.mark.parametrize(
    "browser_context_options",
    [{"locale": locale, "timezone_id": "UTC"} for locale in WORDS],
    ids=list(WORDS),
)
def test_no_serious_violations_on_the_form_the_timeline_and_the_outbox(
    browser_page, start_daphne, start_worker, dev_mailbox, browser_context_options
):
    words = WORDS[browser_context_options["locale"]]
    env = dev_mailbox[0]
    start_worker(**env)
    server = start_daphne(**env)
    page = browser_page
    page.goto(server.url)
    assert serious_violations(page) == []

    # Errors shown in place (the server's: the browser's own checks are switched off).
    page.locator("#feedback-form").evaluate("form => { form.noValidate = true }")
    page.get_by_label(words["email"]).fill("not an address")
    page.get_by_role("button", name=re.compile(words["celery"])).click()
    expect(page.locator(".errorlist").first).to_be_visible()
    # Focus goes to the first field in error, announced as invalid.
    expect(page.get_by_label(words["email"])).to_be_focused()
    expect(page.get_by_label(words["email"])).to_have_attribute("aria-invalid", "true")
    assert serious_violations(page) == []

    # Both ways sent, the timelines final, the answer times side by side.
    for email, button in [
        ("a11y-sync@example.com", words["old way"]),
        ("a11y@example.com", words["celery"]),
    ]:
        page.get_by_label(words["email"]).fill(email)
        page.get_by_label(words["message"]).fill("Checking accessibility.")
        page.get_by_role("button", name=re.compile(button)).click()
        status = page.locator(".submission", has_text=email).locator(".status")
        expect(status).to_have_attribute("data-status", "sent", timeout=30_000)
    assert serious_violations(page) == []
    status_page = page.locator(".submission").first.get_by_role("link", name=words["status page"])
    status_url = status_page.get_attribute("href")

    page.get_by_role("link", name=words["outbox"], exact=True).click()
    expect(page.locator(".mail")).to_have_count(2)
    assert serious_violations(page) == []

    page.goto(server.url + status_url)
    expect(page.locator(".status")).to_have_attribute("data-status", "sent")
    assert serious_violations(page) == []


def test_keyboard_only_send_and_follow(browser_page, start_daphne, start_worker):
    start_worker()
    server = start_daphne()
    page = browser_page
    page.goto(server.url)
    keyboard = page.keyboard

    # The skip link comes first and lands in the main content.
    keyboard.press("Tab")
    expect(page.locator(".skip-link")).to_be_focused()
    expect(page.locator(".skip-link")).to_be_visible()

    page.get_by_label("Your email address").focus()
    keyboard.type("keys@example.com")
    keyboard.press("Tab")
    expect(page.get_by_label("Message")).to_be_focused()
    keyboard.type("No mouse needed.")
    keyboard.press("Tab")
    celery = page.get_by_role("button", name=re.compile("With Celery"))
    expect(celery).to_be_focused()
    keyboard.press("Tab")
    expect(page.get_by_role("button", name=re.compile("The old way"))).to_be_focused()
    keyboard.press("Shift+Tab")
    keyboard.press("Enter")

    submission = page.locator(".submission", has_text="keys@example.com")
    expect(submission.locator(".status")).to_have_attribute("data-status", "sent", timeout=30_000)
    # Focus came back to the button pressed, ready for the next one.
    expect(celery).to_be_focused()
    # The status is readable as text, colour aside, and was read out.
    expect(submission.locator(".status__badge")).to_have_text("Sent")
    expect(page.locator("#announcer")).to_contain_text("Confirmation sent to keys@example.com")
