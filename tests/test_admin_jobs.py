"""The admin's bulk jobs ("Resend all selected", "Export as CSV"): one background job each on the
live-task API, its card live on the admin's job page, watched and downloaded by its owner only
(a real worker, Redis, daphne and Chromium)."""

import csv
import io
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone, translation
from playwright.sync_api import expect

from devtools import processes
from feedback import jobs, services
from feedback.models import Feedback, FeedbackEvent, Status
from feedback.selectors import feedback_render_status
from livetasks import LiveTaskResult, TaskResultStatus
from realtime.consumers import HEARTBEAT, REFUSED
from tests.test_accessibility import serious_violations

pytestmark = pytest.mark.django_db

LIST = "/admin/feedback/feedback/"
PASSWORD = "a-long-password-1"
# Cells a spreadsheet would run, as a submitter may type them.
HOSTILE = ['=HYPERLINK("http://evil.example")', "+1+2", "-3", "@SUM(A1)", "\tx", "\rx"]


# -- Rows, jobs, results ---------------------------------------------------------------


def make_rows(
    count: int, *, status: str = Status.SENT, message_size: int = 200, name: str = "row"
) -> list[str]:
    """`count` feedback, oldest first, a few with cells a spreadsheet would run; their ids."""
    start = timezone.now() - timedelta(days=1)
    filler = "x" * message_size
    rows = [
        Feedback(
            email=f"{name}{number}@example.com",
            message=HOSTILE[number % len(HOSTILE)] if number % 97 == 0 else f"{number} {filler}",
            status=status,
            attempts=5 if status == Status.FAILED else 1,
        )
        for number in range(count)
    ]
    Feedback.objects.bulk_create(rows, batch_size=500)
    # created_at is auto_now_add: spread it so the file's order is the rows' order.
    for number, row in enumerate(rows):
        row.created_at = start + timedelta(milliseconds=number)
    Feedback.objects.bulk_update(rows, ["created_at"], batch_size=500)
    if status == Status.FAILED:
        FeedbackEvent.objects.bulk_create(
            [FeedbackEvent(feedback=row, status=Status.FAILED) for row in rows], batch_size=500
        )
    return [str(row.pk) for row in rows]


def start_job(client: Client, action: str, ids: list[str], *, search: str = "") -> str:
    """Run a list action on these ids (with `search`: on every row it finds, as "Select all"
    does); the job's page it redirects to."""
    if search:
        url, data = f"{LIST}?q={search}", {"select_across": "1", "_selected_action": ids[:1]}
    else:
        url, data = LIST, {"_selected_action": ids}
    response = client.post(url, {"action": action, **data})
    assert response.status_code == 302, response.content[:500]
    assert re.fullmatch(rf"{LIST}jobs/[^/]+/", response.url), response.url
    return response.url


def result_of(job_url: str) -> LiveTaskResult:
    result_id = job_url.rstrip("/").rsplit("/", 1)[1]
    return LiveTaskResult.objects.get(pk=result_id)


def wait_for(predicate, timeout: float = 60, what: str = "the condition"):
    return processes.wait_until(predicate, timeout, what)


def finished(result: LiveTaskResult, timeout: float = 120) -> LiveTaskResult:
    def done():
        result.refresh()
        return result.is_finished

    wait_for(done, timeout, "final state")
    return result


def read_csv(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


# -- The CSV, cell by cell -------------------------------------------------------------


def test_a_cell_a_spreadsheet_would_run_is_escaped_and_no_other():
    for text in HOSTILE:
        assert jobs.csv_cell(text) == f"'{text}"
    for text in ("ada@example.com", "2 + 2", "x=1", "", "'quoted", "Olá, ação"):
        assert jobs.csv_cell(text) == text
    assert jobs.csv_cell(None) == ""
    assert jobs.csv_cell(5) == "5"
    moment = timezone.now()
    assert jobs.csv_cell(moment) == moment.isoformat()


def test_the_header_speaks_the_askers_language():
    with translation.override("en"):
        english = jobs.export_header()
    with translation.override("pt-br"):
        portuguese = jobs.export_header()
    assert english[:3] == ["id", "email address", "status"]
    assert portuguese[:3] == ["id", "endereço de e-mail", "status"]
    assert portuguese[-1] == "mensagem" and english[-1] == "message"


def test_the_job_page_its_steps_and_the_files_header_speak_the_askers_language(admin_client):
    admin_client.defaults.update(HTTP_ACCEPT_LANGUAGE="pt-BR")
    job_url = start_job(admin_client, "export_csv", make_rows(2))
    result = result_of(job_url)
    assert result.args[1] == "pt-br"  # the header's language
    # What the worker stores while writing: the step's msgid (the site's language).
    with translation.override("en"):
        step = str(jobs.WRITING)
    LiveTaskResult.objects.filter(pk=result.pk).update(status="RUNNING", step=step, total=2)
    html = admin_client.get(job_url).content.decode()
    assert "<title>Exportar como CSV" in html and "Escrevendo as linhas" in html
    assert "Voltar aos feedbacks" in html and "Início" in html


def test_a_resend_with_no_failed_row_starts_no_job(admin_client):
    response = admin_client.post(
        LIST, {"action": "resend_selected", "_selected_action": make_rows(2)}, follow=True
    )
    assert response.redirect_chain == [(LIST, 302)]
    assert "Left 2 alone: only failed feedback can be resent." in response.content.decode()
    assert not LiveTaskResult.objects.exists()


def test_the_resend_says_at_the_end_how_many_it_resent_and_left_alone(admin_client):
    failed = make_rows(5, status=Status.FAILED, message_size=10)
    job_url = start_job(admin_client, "resend_selected", failed)
    # Between the click and the job: one resent by hand, one deleted.
    assert services.feedback_resend(feedback_id=failed[0])
    assert services.feedback_delete(feedback_ids=[failed[1]]) == 1
    result = result_of(job_url)
    assert "confirmations again" not in admin_client.get(job_url).content.decode()
    jobs.feedback_resend_selected.task(str(result.pk))  # as the worker runs it
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == {"resent": 3, "skipped": 2}
    html = admin_client.get(job_url).content.decode()
    assert "Queued 3 confirmations again." in html
    assert "Left 2 alone: they were no longer failed when the job reached them." in html
    html = admin_client.get(job_url, headers={"Accept-Language": "pt-BR"}).content.decode()
    assert "3 confirmações voltaram para a fila." in html
    assert "2 ficaram como estavam: já não estavam com falha quando o trabalho chegou" in html


# -- Who may start, see, cancel and download a job -------------------------------------


def test_staff_who_may_only_view_may_export_but_not_resend(client, django_user_model):
    viewer = django_user_model.objects.create_user("viewer", password=PASSWORD, is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_feedback"))
    client.force_login(viewer)
    failed = make_rows(1, status=Status.FAILED)
    actions = client.get(LIST).content.decode()
    assert 'value="export_csv"' in actions and 'value="resend_selected"' not in actions
    client.post(LIST, {"action": "resend_selected", "_selected_action": failed})
    assert not LiveTaskResult.objects.exists()
    assert Feedback.objects.get().status == Status.FAILED


def test_the_job_page_another_staff_user_or_a_visitor_gets_404(admin_client, django_user_model):
    job_url = start_job(admin_client, "export_csv", make_rows(3))
    page = admin_client.get(job_url)
    assert page.status_code == 200
    html = page.content.decode()
    token = re.search(r'data-watch="task/([^"]+)"', html).group(1)
    assert 'id="live"' in html and "js/live.js" in html and "js/status-fallback.js" in html

    other = django_user_model.objects.create_superuser("other", "o@example.com", PASSWORD)
    other_client = Client()
    other_client.force_login(other)
    assert other_client.get(job_url).status_code == 404
    for path in (f"/tasks/{token}/", f"/tasks/{token}/download"):
        assert other_client.get(path).status_code == 404, path
    assert other_client.post(f"/tasks/{token}/cancel").status_code == 404
    # The same staff member in another browser: another session, not the owner either.
    admin_user = django_user_model.objects.get(username="admin")
    second = Client()
    second.force_login(admin_user)
    assert second.get(job_url).status_code == 404
    # Not staff: the admin sends them to log in; the task's own URLs are 404.
    visitor = Client()
    assert visitor.get(job_url).status_code == 302
    assert visitor.get(f"/tasks/{token}/download").status_code == 404


# -- In a browser, against daphne, a worker and Redis ------------------------------------


def log_in(page, url: str, next_path: str, username: str = "admin") -> None:
    page.goto(f"{url}/admin/login/?next={next_path}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{url}{next_path}")


def run_action_on_all(page, description: str, count: int) -> None:
    """On the list: select every row (across pages), choose the action, run it."""
    page.locator("#action-toggle").check()
    if count > 100:  # more than one page: "Select all N feedback" across the pages
        page.get_by_role("button", name=re.compile(r"^Select all \S+ feedback$")).click()
        expect(page.locator(".actions .all")).to_have_text(f"All {count} selected")
    page.select_option("select[name=action]", label=description)
    page.click("button[name=index]")
    page.wait_for_url(re.compile(r".*/jobs/[^/]+/$"))


def shown_done(page) -> int:
    return int(page.locator("[data-watch] [data-done]").get_attribute("data-done"))


# Records each progress value the card shows from now on, as it changes.
SHOWN_PROGRESS = """() => {
  window.__shown = [];
  window.__shownAt = [];
  const card = document.querySelector(".job-card");
  const current = () => card.querySelector("[data-done]")?.getAttribute("data-done");
  let last = current();
  new MutationObserver(() => {
    const done = current();
    if (done === last) return;
    last = done;
    window.__shown.push(Number(done));
    window.__shownAt.push(performance.now());
  }).observe(card, {subtree: true, childList: true, attributes: true});
}"""

ROWS = 10_000
# 10,000 rows in about 10 s: slow enough to reload and cut the socket on the way.
PACE = 1_000


@pytest.mark.django_db(transaction=True)
def test_an_export_of_10000_rows_moves_live_survives_a_reload_and_a_cut_socket_and_downloads(
    browser_page, start_worker, start_daphne, django_user_model
):
    django_user_model.objects.create_superuser("admin", "admin@example.com", PASSWORD)
    ids = make_rows(ROWS)
    start_worker(FEEDBACK_JOB_ROWS_PER_SECOND=PACE)
    server = start_daphne()
    page = browser_page
    sockets = {"cut": False, "open": []}

    def on_socket(ws):
        if sockets["cut"]:
            ws.close(code=1012)  # daphne "restarting": the page polls meanwhile
        else:
            ws.connect_to_server()
            sockets["open"].append(ws)

    page.route_web_socket(re.compile(r".*/ws/watch/.*"), on_socket)
    log_in(page, server.url, LIST)
    run_action_on_all(page, "Export as CSV", ROWS)
    result = result_of(page.url.removeprefix(server.url))
    card = page.locator("[data-watch]")
    expect(card).to_contain_text(f"of {ROWS}")
    page.evaluate(SHOWN_PROGRESS)
    wait_for(lambda: len(page.evaluate("window.__shown")) >= 4, 30, "the bar moving live")
    assert page.evaluate("window.__shown") == sorted(page.evaluate("window.__shown"))
    moments = page.evaluate("window.__shownAt")
    gaps = [later - earlier for earlier, later in zip(moments, moments[1:], strict=False)]
    print(f"\nthe bar moved every {min(gaps):.0f} to {max(gaps):.0f} ms ({PACE} rows/s)")

    # A reload mid-way: the card comes back where the job is, not at 0.
    result.refresh()
    before = result.done
    assert 0 < before < ROWS
    page.reload()
    assert shown_done(page) >= before
    page.evaluate(SHOWN_PROGRESS)
    wait_for(lambda: page.evaluate("window.__shown"), 30, "the bar moving after the reload")

    # The socket cut mid-way (and refused for a while): the bar still moves, by polling.
    result.refresh()
    assert result.done < ROWS, "the job ended before the socket could be cut"
    polls: list[str] = []
    page.on("request", lambda request: "/tasks/" in request.url and polls.append(request.url))
    sockets["cut"] = True
    for ws in sockets["open"]:
        ws.close(code=1006)
    page.evaluate(SHOWN_PROGRESS)
    wait_for(lambda: len(page.evaluate("window.__shown")) >= 2, 30, "polling while cut")
    assert polls, "the bar moved while cut, but not by polling"
    sockets["cut"] = False

    link = page.locator("[data-watch]").get_by_role("button", name=re.compile("Download"))
    expect(link).to_be_visible(timeout=60_000)
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.done == ROWS
    with page.expect_download() as download:
        link.click()
    rows = read_csv(Path(download.value.path()).read_bytes())
    header, body = rows[0], rows[1:]
    assert header[:2] == ["id", "email address"] and len(header) == len(jobs.EXPORT_FIELDS)
    assert [row[0] for row in body] == ids  # every row once, in the rows' order
    messages = [row[-1] for row in body]
    for text in HOSTILE:
        assert f"'{text}" in messages
    assert not any(message.startswith(("=", "+", "-", "@")) for message in messages)


@pytest.mark.django_db(transaction=True)
def test_cancel_mid_way_stops_within_one_step_and_offers_no_file(
    browser_page, start_worker, start_daphne, django_user_model
):
    django_user_model.objects.create_superuser("admin", "admin@example.com", PASSWORD)
    make_rows(3_000, message_size=20)
    start_worker(FEEDBACK_JOB_ROWS_PER_SECOND=500)
    server = start_daphne()
    page = browser_page
    log_in(page, server.url, LIST)
    run_action_on_all(page, "Export as CSV", 3_000)
    result = result_of(page.url.removeprefix(server.url))
    wait_for(lambda: result.refresh() or result.done > 0, 30, "a first step")
    token = page.locator("[data-watch]").get_attribute("data-watch").removeprefix("task/")
    assert serious_violations(page) == []  # the job's page, its bar and its buttons (axe-core)

    page.locator("[data-watch]").get_by_role("button", name="Cancel").click()
    # Once the cancel is stored, the job writes at most the step it is in.
    wait_for(lambda: result.refresh() or result.cancel_requested_at, 15, "the cancel stored")
    asked_at = result.done
    finished(result)
    assert result.status == TaskResultStatus.CANCELLED
    assert result.done - asked_at <= jobs.EXPORT_ROWS_PER_STEP
    assert result.done < 3_000
    card = page.locator("[data-watch]")
    expect(card).to_contain_text("Cancelled")
    expect(card.get_by_role("button", name=re.compile("Download"))).to_have_count(0)
    expect(card.get_by_role("button", name="Cancel")).to_have_count(0)
    assert not result.has_output
    assert page.request.get(f"{server.url}/tasks/{token}/download").status == 404


@pytest.mark.engines
@pytest.mark.django_db(transaction=True)
def test_a_bulk_resend_of_200_failed_rows_each_card_agrees_with_the_jobs_bar(
    admin_client, start_worker, smtp_server
):
    failed = make_rows(200, status=Status.FAILED, message_size=10)
    sent = make_rows(5, message_size=10)  # not failed: skipped, and said so
    start_worker(FEEDBACK_SEND_DELAY=0, concurrency=2)
    response = admin_client.post(
        LIST, {"action": "resend_selected", "_selected_action": failed + sent}, follow=True
    )
    job_url = response.redirect_chain[-1][0]
    # The rows that are not failed: counted and said so at once; the job takes the others.
    assert "Left 5 alone: only failed feedback can be resent." in response.content.decode()
    result = finished(result_of(job_url))
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert (result.done, result.total) == (200, 200)
    card = admin_client.get(job_url).content.decode()
    assert re.search(r'class="task__count">\s*200 of 200', card)
    assert "Queued 200 confirmations again." in card and "no longer failed" not in card

    # Each resent row's own card: queued again, then sent, once; the skipped ones untouched.
    wait_for(
        lambda: Feedback.objects.filter(pk__in=failed, status=Status.SENT).count() == 200,
        120,
        "200 sends",
    )
    for feedback in Feedback.objects.filter(pk__in=failed):
        assert 'data-status="sent"' in feedback_render_status(feedback=feedback)
        steps = list(feedback.events.values_list("status", flat=True))
        assert steps[:2] == ["failed", "queued"] and steps[-1] == "sent"
    assert sorted(message.rcpt_tos[0] for message in smtp_server.wait_for(200)) == sorted(
        f"row{number}@example.com" for number in range(200)
    )
    assert set(Feedback.objects.filter(pk__in=sent).values_list("status", flat=True)) == {"sent"}
    assert not FeedbackEvent.objects.filter(feedback_id__in=sent).exists()


@pytest.mark.django_db(transaction=True)
def test_cancel_a_resend_mid_way_stops_within_one_step_and_leaves_the_rest_failed(
    admin_client, start_worker, smtp_server
):
    failed = make_rows(200, status=Status.FAILED, message_size=10)
    start_worker(FEEDBACK_SEND_DELAY=0, FEEDBACK_JOB_ROWS_PER_SECOND=20)  # 10 s in all
    job_url = start_job(admin_client, "resend_selected", failed)
    result = result_of(job_url)
    wait_for(lambda: result.refresh() or result.done > 0, 30, "a first step")
    card = admin_client.get(job_url).content.decode()
    token = re.search(r'data-watch="task/([^"]+)"', card).group(1)
    answer = admin_client.post(f"/tasks/{token}/cancel", headers={"HX-Request": "true"})
    assert answer.status_code == 200 and "Stopping" in answer.content.decode()
    result.refresh()
    asked_at = result.done  # stored with the cancel: the job goes at most one step further
    finished(result)
    assert result.status == TaskResultStatus.CANCELLED and result.return_value is None
    assert asked_at <= result.done <= asked_at + jobs.RESEND_ROWS_PER_STEP < 200

    # The card's count is the rows the job went through: each of them resent, no other.
    resent = set(
        FeedbackEvent.objects.filter(feedback_id__in=failed, status=Status.QUEUED)
        .values_list("feedback_id", flat=True)
        .distinct()
    )
    assert {str(pk) for pk in resent} == set(failed[: result.done])
    untouched = Feedback.objects.filter(pk__in=failed[result.done :])
    assert set(untouched.values_list("status", flat=True)) == {Status.FAILED}
    card = admin_client.get(job_url).content.decode()
    assert re.search(rf'class="task__count">\s*{result.done} of 200', card)
    assert "Cancelled" in card and "nothing was kept" not in card
    assert "confirmations again" not in card  # no result: it did not end


WATCH_ONCE = """async ([path, name]) => {
  const socket = new WebSocket(`ws://${location.host}${path}`);
  await new Promise((opened) => socket.addEventListener("open", opened));
  const answer = new Promise((answered) => socket.addEventListener("message", (event) => {
    if (event.data !== HEARTBEAT) answered(String(event.data));
  }));
  socket.send(`watch ${name}`);
  const text = await answer;
  socket.close();
  return text;
}"""


@pytest.mark.django_db(transaction=True)
def test_another_staff_user_or_a_visitor_cannot_watch_the_job(
    browser_page, start_worker, start_daphne, django_user_model
):
    django_user_model.objects.create_superuser("admin", "admin@example.com", PASSWORD)
    django_user_model.objects.create_superuser("other", "other@example.com", PASSWORD)
    make_rows(3)
    server = start_daphne()  # no worker: the job waits, watched
    staff = browser_page
    log_in(staff, server.url, LIST)
    run_action_on_all(staff, "Export as CSV", 3)
    job_path = staff.url.removeprefix(server.url)
    name = staff.locator("[data-watch]").get_attribute("data-watch")
    path = staff.locator("#live").get_attribute("data-live-path")
    watch = WATCH_ONCE.replace("HEARTBEAT", repr(HEARTBEAT))
    assert REFUSED not in staff.evaluate(watch, [path, name])  # the owner: the card

    browser = staff.context.browser
    other = browser.new_context(locale="en-US", timezone_id="UTC").new_page()
    log_in(other, server.url, LIST, username="other")
    assert other.evaluate(watch, [path, name]) == f"{REFUSED} {name}"
    assert other.goto(f"{server.url}{job_path}").status == 404
    other.context.close()

    visitor = browser.new_context(locale="en-US", timezone_id="UTC").new_page()
    visitor.goto(server.url)
    assert visitor.evaluate(watch, [path, name]) == f"{REFUSED} {name}"
    visitor.goto(f"{server.url}{job_path}")
    assert "/admin/login/" in visitor.url
    visitor.context.close()


# -- Memory: the export streams ------------------------------------------------------------


def peak_rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))


@pytest.mark.engines  # streamed by a server-side cursor on PostgreSQL
@pytest.mark.django_db(transaction=True)
def test_the_exports_memory_does_not_grow_with_the_rows(admin_client, start_worker):
    """One pool process runs an export of 1,000 rows, then of 10,000 (2 KB of message each,
    20 MB in all): its peak RSS grows by far less than the rows it wrote."""
    small = make_rows(1_000, message_size=2_000, name="small")
    large = small + make_rows(9_000, message_size=2_000, name="large")
    worker = start_worker(concurrency=1)
    (pool,) = worker.pool_pids()
    peaks, seconds = [], []
    for ids, search in ((small, "small"), (large, "example.com")):
        result = finished(result_of(start_job(admin_client, "export_csv", ids, search=search)))
        seconds.append((result.finished_at - result.started_at).total_seconds())
        assert result.status == TaskResultStatus.SUCCESSFUL and result.done == len(ids)
        peaks.append(peak_rss_kib(pool))
    print(
        f"\nexport: 1,000 rows {seconds[0]:.2f} s, peak RSS {peaks[0] / 1024:.1f} MiB; "
        f"10,000 rows {seconds[1]:.2f} s, peak RSS {peaks[1] / 1024:.1f} MiB"
    )
    assert peaks[1] - peaks[0] < 8 * 1024, peaks
