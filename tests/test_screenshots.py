"""Pictures for the README, made by the real app in a real browser so they stay current.

Each run takes the pictures and checks what they show (the page states asserted
before each shot, and each file a PNG of the expected size). They are written
to the test's temp dir; with UPDATE_SCREENSHOTS=1 they replace
docs/screenshots/*.png (commit them when they change).
"""

import os
import re
import struct
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.django_db(transaction=True)

DOCS_SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
DESKTOP = {"width": 1100, "height": 900}
PHONE = {"width": 390, "height": 844}


def send(page: Page, email: str, button: str) -> None:
    page.get_by_label("Your email address").fill(email)
    page.get_by_label("Message").fill(
        "The new page is lovely, but the footer overlaps on my phone."
    )
    page.get_by_role("button", name=re.compile(button)).click()
    expect(page.locator(".submission", has_text=email)).to_be_visible()


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG file; fails if it is not one."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    return struct.unpack(">II", header[16:24])


def test_screenshots_of_the_form_the_timeline_and_the_outbox(
    browser_page, start_daphne, start_worker, dev_mailbox, tmp_path
):
    update = os.environ.get("UPDATE_SCREENSHOTS") == "1"
    SCREENSHOTS = DOCS_SCREENSHOTS if update else tmp_path
    # Mail goes to the local mailbox of `make run`, so the Outbox has something to show;
    # the defaults of `make run` (delay, undo window) give time to see things move.
    env = {**dev_mailbox[0], "FEEDBACK_SEND_DELAY": 3, "FEEDBACK_UNDO_SECONDS": 5}
    start_worker(**env)
    server = start_daphne(**env)
    page = browser_page
    page.set_viewport_size(DESKTOP)
    page.goto(server.url)
    expect(page.get_by_role("button", name=re.compile("With Celery"))).to_be_visible()
    page.screenshot(path=SCREENSHOTS / "form.png", full_page=True)

    send(page, "grace@example.com", "The old way")
    send(page, "ada@example.com", "With Celery")
    send(page, "alan@example.com", "With Celery")
    # The moment worth a picture: one sent, one moving along, one waiting its turn, and
    # one just sent off that can still be undone, each waiting one with its place in the queue.
    ada = page.locator(".submission", has_text="ada@example.com")
    expect(ada.locator("progress")).to_have_attribute(
        "value", re.compile(r"^[1-9]"), timeout=30_000
    )
    send(page, "linus@example.com", "With Celery")
    linus = page.locator(".submission", has_text="linus@example.com")
    expect(linus.get_by_role("button", name="Undo")).to_be_visible()
    expect(linus.locator(".status")).to_have_attribute("data-ahead", re.compile(r"^\d+$"))
    page.locator("body").evaluate("() => document.activeElement.blur()")
    expect(
        page.locator(".submission", has_text="grace@example.com").locator(".status")
    ).to_have_attribute("data-status", "sent")
    expect(
        page.locator(".submission", has_text="alan@example.com").locator(".status")
    ).to_have_attribute("data-status", "queued")
    page.screenshot(path=SCREENSHOTS / "timeline.png", full_page=True)

    page.set_viewport_size(PHONE)
    page.locator("#submissions").evaluate("element => element.scrollIntoView()")
    page.screenshot(path=SCREENSHOTS / "phone.png")
    page.set_viewport_size(DESKTOP)
    alan = page.locator(".submission", has_text="alan@example.com")
    expect(alan.locator(".status")).to_have_attribute("data-status", "sent", timeout=30_000)

    alan.get_by_role("link", name="See the email in the Outbox").click()
    expect(page.locator(".mail").nth(2)).to_be_visible()
    page.screenshot(path=SCREENSHOTS / "outbox.png")

    for name in ("form", "timeline", "outbox"):
        width, height = png_size(SCREENSHOTS / f"{name}.png")
        assert width == DESKTOP["width"] and height >= 400, (name, width, height)
    assert png_size(SCREENSHOTS / "phone.png") == (PHONE["width"], PHONE["height"])


@pytest.mark.parametrize(
    "browser_context_options", [{"locale": "pt-BR", "timezone_id": "America/Sao_Paulo"}]
)
def test_screenshot_in_portuguese(browser_page, start_daphne, start_worker, dev_mailbox, tmp_path):
    update = os.environ.get("UPDATE_SCREENSHOTS") == "1"
    SCREENSHOTS = DOCS_SCREENSHOTS if update else tmp_path
    env = {**dev_mailbox[0], "FEEDBACK_SEND_DELAY": 3, "FEEDBACK_UNDO_SECONDS": 5}
    start_worker(**env)
    server = start_daphne(**env)
    page = browser_page
    page.set_viewport_size(DESKTOP)
    page.goto(server.url)
    expect(page.locator("html")).to_have_attribute("lang", "pt-br")
    for email, button in [
        ("joana@example.com.br", "Do jeito antigo"),
        ("pedro@example.com.br", "Com Celery"),
        ("lucia@example.com.br", "Com Celery"),
    ]:
        page.get_by_label("Seu endereço de e-mail").fill(email)
        page.get_by_label("Mensagem").fill("A página ficou ótima, mas o rodapé some no celular.")
        page.get_by_role("button", name=re.compile(button)).click()
        expect(page.locator(".submission", has_text=email)).to_be_visible()
    pedro = page.locator(".submission", has_text="pedro@example.com.br")
    lucia = page.locator(".submission", has_text="lucia@example.com.br")
    expect(pedro.locator("progress")).to_have_attribute(
        "value", re.compile(r"^[1-9]"), timeout=30_000
    )
    expect(lucia.locator(".status__badge")).to_have_text("Na fila")
    expect(lucia.locator(".status__place")).to_contain_text("na sua frente")
    page.locator("body").evaluate("() => document.activeElement.blur()")
    expect(
        page.locator(".submission", has_text="joana@example.com.br").locator(".status__badge")
    ).to_have_text("Enviado")
    page.screenshot(path=SCREENSHOTS / "portuguese.png", full_page=True)
    width, height = png_size(SCREENSHOTS / "portuguese.png")
    assert width == DESKTOP["width"] and height >= 400, (width, height)
