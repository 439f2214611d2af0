"""In a real browser against real daphne and a real worker: htmx and its websocket work
under the Content-Security-Policy, and nothing the policy blocks is attempted."""

import pytest

from feedback.models import Feedback

pytestmark = pytest.mark.django_db(transaction=True)

XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script> & done'

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
    page.fill("textarea[name=message]", XSS)
    page.click("button[value=async]")

    # Swapped in by htmx (no navigation), then moved to sent over the websocket.
    status = page.locator("#submissions [data-status]")
    status.first.wait_for()
    assert page.url == daphne.url + "/"
    page.wait_for_selector('#submissions [data-status="sent"]', timeout=30_000)
    assert len(smtp_server.wait_for(1)) == 1
    assert Feedback.objects.get().status == Feedback.Status.SENT

    # The payload is shown as text: nothing of it ran or was even built as an element.
    message = page.locator("#submissions .submission__message").first
    assert message.inner_text() == XSS
    assert page.evaluate("window.__xss") is None
    assert page.locator("#submissions img, #submissions script").count() == 0
    assert page.evaluate("window.__cspViolations") == []
    assert not [line for line in console if "Content Security Policy" in line], console


def test_over_the_rate_limit_htmx_swaps_in_the_friendly_429(browser_page, start_daphne):
    # An hourly window: a minute window could roll over between the two posts.
    daphne = start_daphne(FEEDBACK_RATE_LIMIT="1/h")
    page = browser_page
    page.add_init_script(RECORD_CSP_VIOLATIONS)
    page.goto(daphne.url + "/")
    for attempt in range(2):
        page.fill("input[name=email]", "ada@example.com")
        page.fill("textarea[name=message]", f"Message number {attempt + 1}")
        with page.expect_response(lambda response: response.request.method == "POST") as posted:
            page.click("button[value=async]")
        page.wait_for_load_state()
    # htmx 2 drops a 4xx by default; base.html's htmx-config makes it swap this one.
    assert posted.value.status == 429
    form = page.locator("#feedback-form")
    form.get_by_text("sent several messages in a short time").wait_for()
    assert form.locator("textarea[name=message]").input_value() == "Message number 2"
    assert page.locator("#submissions .submission").count() == 1
    assert Feedback.objects.count() == 1
    assert page.evaluate("window.__cspViolations") == []


def test_the_admin_works_under_the_csp_and_shows_the_payload_as_text(
    browser_page, start_daphne, django_user_model
):
    django_user_model.objects.create_superuser("admin", "admin@example.com", "a-long-password-1")
    feedback = Feedback.objects.create(email="ada@example.com", message=XSS)
    daphne = start_daphne()
    page = browser_page
    page.add_init_script(RECORD_CSP_VIOLATIONS)
    page.goto(daphne.url + "/admin/login/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "a-long-password-1")
    page.click("input[type=submit]")
    page.goto(daphne.url + "/admin/feedback/feedback/")
    page.get_by_text("ada@example.com").first.wait_for()
    page.goto(daphne.url + f"/admin/feedback/feedback/{feedback.pk}/change/")
    # A record, not a form: the message is shown as text.
    assert page.locator(".field-message .readonly").text_content() == XSS
    assert page.evaluate("window.__xss") is None
    assert page.evaluate("window.__cspViolations") == []


def test_the_admin_a_developer_meets_logs_no_csp_violation_and_no_error(
    browser_page, start_daphne, app_env
):
    """Logged in with what `make admin` prints, every admin page a developer opens
    (and the job page of Resend all selected) runs with no CSP violation, no console error and no
    failed request (the favicon included)."""
    from tests.test_admin_login import admin_login, login_from

    failed = Feedback.objects.create(email="ada@example.com", message=XSS, status="failed")
    daphne = start_daphne()
    _, username, password = login_from(admin_login(app_env))
    page = browser_page
    console, bad_responses = [], []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))

    def note_failure(response) -> None:
        if response.status >= 400:
            bad_responses.append(f"{response.status} {response.url}")

    page.on("response", note_failure)
    page.add_init_script(RECORD_CSP_VIOLATIONS)
    violations = []

    def visit(path: str) -> None:
        page.goto(daphne.url + path)
        page.wait_for_load_state("load")
        violations.extend(f"{path}: {v}" for v in page.evaluate("window.__cspViolations"))

    visit("/admin/")  # to the login page
    assert "/admin/login/" in page.url
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "not the password")
    page.click("input[type=submit]")
    page.locator(".errornote").wait_for()
    page.fill("input[name=password]", password)
    page.click("input[type=submit]")
    page.locator("#user-tools").wait_for()  # logged in

    for path in [
        "/admin/",
        "/admin/feedback/feedback/",
        "/admin/feedback/feedback/?status__exact=failed&q=ada",
        f"/admin/feedback/feedback/{failed.pk}/change/",
        f"/admin/feedback/feedback/{failed.pk}/history/",
        f"/admin/feedback/feedback/{failed.pk}/delete/",
        "/admin/auth/user/",
        "/admin/auth/user/add/",
        "/admin/auth/group/add/",
        "/admin/password_change/",
    ]:
        visit(path)
    visit("/admin/feedback/feedback/")
    page.check(f"input.action-select[value='{failed.pk}']")
    page.select_option("select[name=action]", "resend_selected")
    page.click("button[name=index]")
    page.locator(".job-card [data-watch]").wait_for()  # the job's page, its card live
    violations.extend(page.evaluate("window.__cspViolations"))

    assert violations == []
    assert [line for line in console if line.startswith("error")] == []
    assert bad_responses == []
    # The recorder does see a violation when there is one: an inline style.
    page.evaluate("document.body.insertAdjacentHTML('beforeend', '<p style=\"color: red\">x</p>')")
    page.wait_for_function("window.__cspViolations.length > 0")
    assert page.evaluate("window.__cspViolations")[0].startswith("style-src")
