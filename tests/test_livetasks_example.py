"""The docs' example ("Watch your own task in ten lines") is the test app's code, word for
word, and runs live end to end: a real worker, Redis, daphne and Chromium. With it: progress
after a reload and after the socket is cut, cancel mid-way, a killed worker."""

import re
import signal
from pathlib import Path

from playwright.sync_api import expect

from devtools import processes
from livetasks import LiveTaskResult, TaskResultStatus
from tests.support.stall_proxy import StallProxy

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "tests" / "livetask_example"
EXAMPLE_SETTINGS = {"DJANGO_SETTINGS_MODULE": "tests.livetask_example.settings"}
CARD = "[data-watch^='task/']"
STATUS = f"{CARD} .status"
Status = TaskResultStatus


def docs_blocks() -> list[str]:
    text = (ROOT / "docs" / "live-tasks.md").read_text()
    section = text.split("## Watch your own task in ten lines", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_the_docs_example_is_the_test_app_s_code_word_for_word():
    tasks, urls = docs_blocks()
    assert tasks == (EXAMPLE / "tasks.py").read_text()
    assert urls.strip() in (EXAMPLE / "urls.py").read_text()
    # Only the public API: nothing from inside livetasks, nothing of the project.
    imports = re.findall(r"^(?:from|import) (\S+)", tasks, flags=re.MULTILINE)
    assert [name for name in imports if name.split(".")[0] not in ("django", "time")] == [
        "livetasks"
    ]


def start_counting(page, url: str) -> None:
    """The docs' form: a POST to /count/ with the page's CSRF token, landing on the card."""
    page.goto(url)
    page.evaluate("""() => {
      const form = document.createElement("form");
      form.method = "post";
      form.action = "/count/";
      form.append(document.querySelector("input[name=csrfmiddlewaretoken]").cloneNode());
      document.body.append(form);
      form.submit();
    }""")
    page.wait_for_url(re.compile(r"/tasks/[^/]+/$"))
    expect(page.locator(CARD)).to_have_count(1)


def record_swaps(page) -> None:
    """Every state the card shows, in order: (version, done, status)."""
    page.evaluate("""() => {
      window.__shown = [];
      const note = () => {
        const status = document.querySelector(".status[data-version]");
        if (status) window.__shown.push([+status.dataset.version, +status.dataset.done,
                                         status.dataset.status]);
      };
      note();
      new MutationObserver(note).observe(document.body, {childList: true, subtree: true});
    }""")


def shown_done(page) -> int:
    return int(page.locator(STATUS).get_attribute("data-done"))


def wait_until(predicate, timeout: float = 30, what: str = "the condition"):
    return processes.wait_until(predicate, timeout, what)


def test_the_docs_example_runs_live_end_to_end(browser_page, start_worker, start_daphne):
    start_worker(**EXAMPLE_SETTINGS)
    server = start_daphne(**EXAMPLE_SETTINGS)
    page = browser_page
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if r.headers.get("hx-request") else None)
    start_counting(page, server.url)
    record_swaps(page)
    status = page.locator(STATUS)
    expect(status).to_have_attribute("data-status", "RUNNING", timeout=15_000)
    expect(page.locator("#live")).to_have_text("Live")
    expect(status.locator(".task__step")).to_have_text("Counting")
    expect(status.locator(".task__eta")).to_be_visible(timeout=5_000)
    expect(status).to_have_attribute("data-status", "SUCCESSFUL", timeout=30_000)
    expect(status.locator(".task__count")).to_have_text("20 of 20")
    expect(status.locator(".task__cancel")).to_have_count(0)

    shown = page.evaluate("window.__shown")
    versions = [version for version, _done, _status in shown]
    dones = [done for _version, done, _status in shown]
    assert versions == sorted(versions) and dones == sorted(dones), shown
    assert len({done for done in dones if 0 < done < 20}) >= 10, shown  # it moved, live
    assert polls == [], polls  # every state came over the socket
    assert LiveTaskResult.objects.get().status == Status.SUCCESSFUL


def test_after_a_reload_mid_way_the_card_shows_where_it_is_and_goes_on(
    browser_page, start_worker, start_daphne
):
    start_worker(**EXAMPLE_SETTINGS)
    server = start_daphne(**EXAMPLE_SETTINGS)
    page = browser_page
    start_counting(page, server.url)
    wait_until(lambda: shown_done(page) >= 6, what="progress")
    page.reload()
    before = LiveTaskResult.objects.get().done
    # The reloaded page shows the stored progress at once, not from zero.
    assert shown_done(page) >= before - 1 and shown_done(page) >= 5
    record_swaps(page)
    status = page.locator(STATUS)
    expect(status).to_have_attribute("data-status", "SUCCESSFUL", timeout=30_000)
    expect(status.locator(".task__count")).to_have_text("20 of 20")
    dones = [done for _version, done, _status in page.evaluate("window.__shown")]
    assert dones == sorted(dones) and len(set(dones)) > 5, dones


def test_with_the_socket_cut_mid_way_the_card_polls_then_reconnects_and_ends_right(
    browser_page, start_worker, start_daphne
):
    start_worker(**EXAMPLE_SETTINGS)
    server = start_daphne(REALTIME_HEARTBEAT_SECONDS="1", **EXAMPLE_SETTINGS)
    proxy = StallProxy(target_port=server.port).start()
    try:
        page = browser_page
        start_counting(page, proxy.url)
        record_swaps(page)
        wait_until(lambda: shown_done(page) >= 3, what="progress")
        expect(page.locator("#live")).to_have_text("Live")
        assert proxy.stall_websockets() == 1  # silent, not closed
        cut_at = shown_done(page)
        # Noticed (over two heartbeats of silence), then polled, then a new socket.
        expect(page.locator("#live")).to_have_text("Reconnecting…", timeout=10_000)
        status = page.locator(STATUS)
        expect(status).to_have_attribute("data-status", "SUCCESSFUL", timeout=30_000)
        expect(status.locator(".task__count")).to_have_text("20 of 20")
        shown = page.evaluate("window.__shown")
        dones = [done for _version, done, _status in shown]
        versions = [version for version, _done, _status in shown]
        assert dones == sorted(dones) and versions == sorted(versions), shown
        assert any(cut_at < done < 20 for done in dones), shown  # it moved after the cut
    finally:
        proxy.stop()


def test_cancel_mid_way_stops_within_one_step_and_offers_nothing(
    browser_page, start_worker, start_daphne
):
    start_worker(**EXAMPLE_SETTINGS)
    server = start_daphne(**EXAMPLE_SETTINGS)
    page = browser_page
    start_counting(page, server.url)
    wait_until(lambda: shown_done(page) >= 4, what="progress")
    page.get_by_role("button", name="Cancel").click()
    # Once the cancel is stored, the task reports at most one more step (it keeps that count).
    asked = wait_until(
        lambda: LiveTaskResult.objects.filter(cancel_requested_at__isnull=False).first(),
        what="the cancel stored",
    )
    status = page.locator(STATUS)
    expect(status).to_have_attribute("data-status", "CANCELLED", timeout=10_000)
    expect(status.locator(".status__badge")).to_have_text("Cancelled")
    expect(status).not_to_contain_text("nothing was kept")  # it had no file to drop
    result = LiveTaskResult.objects.get()
    assert result.status == Status.CANCELLED and asked.done <= result.done <= asked.done + 1
    expect(status.locator(".task__count")).to_have_text(f"{result.done} of 20")
    assert not result.has_output and status.locator(".task__download").count() == 0


def test_a_worker_killed_mid_task_does_not_leave_it_running(start_worker, start_beat, app_env, rf):
    from django.contrib.auth.models import AnonymousUser
    from django.contrib.sessions.backends.db import SessionStore

    from tests.livetask_example.tasks import count_to

    lease = {"LIVETASKS_LEASE": "2", "LIVETASKS_SWEEP_INTERVAL": "0.5"}
    worker = start_worker(**EXAMPLE_SETTINGS, **lease)
    request = rf.post("/")
    request.session, request.user = SessionStore(), AnonymousUser()
    result = count_to.enqueue(20, owner=request)
    wait_until(lambda: LiveTaskResult.objects.get().done >= 2, what="progress")
    worker.kill_group(signal.SIGKILL)
    start_beat(**lease)
    start_worker(**EXAMPLE_SETTINGS, **lease)  # runs the sweeper
    wait_until(
        lambda: LiveTaskResult.objects.get().status == Status.FAILED, timeout=30, what="FAILED"
    )
    result.refresh()
    assert result.error and result.finished_at is not None
