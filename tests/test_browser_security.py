"""In a real browser against real daphne and a real worker: htmx and its websocket work
under the Content-Security-Policy, and nothing the policy blocks is attempted."""

import pytest

from feedback.models import Feedback

pytestmark = pytest.mark.django_db(transaction=True)

RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


def test_htmx_and_the_websocket_work_under_the_csp(
    browser_page, start_daphne, start_worker, smtp_server
):
    start_worker()
    daphne = start_daphne()
    page = browser_page
    console = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.add_init_script(RECORD_CSP_VIOLATIONS)

    response = page.goto(daphne.url + "/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.fill("input[name=email]", "ada@example.com")
    page.fill("textarea[name=message]", "Works under a strict policy?")
    page.click("button[value=async]")

    # Swapped in by htmx (no navigation), then moved to sent over the websocket.
    status = page.locator("#submissions [data-status]")
    status.first.wait_for()
    assert page.url == daphne.url + "/"
    page.wait_for_selector('#submissions [data-status="sent"]', timeout=30_000)
    assert len(smtp_server.wait_for(1)) == 1
    assert Feedback.objects.get().status == Feedback.Status.SENT

    assert page.evaluate("window.__cspViolations") == []
    assert not [line for line in console if "Content Security Policy" in line], console
