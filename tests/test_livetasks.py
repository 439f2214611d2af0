"""The live tasks API, its task called directly (no worker): moves, throttled progress,
cooperative cancel, outputs, the owner's rights, the sweeper."""

import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.contrib.sessions.backends.db import SessionStore
from django.core.checks import run_checks
from django.core.files.storage import storages
from django.test import RequestFactory
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy

import livetasks.api
from livetasks import Cancelled, LiveTaskResult, TaskContext, TaskResultStatus, live_task
from livetasks.checks import live_tasks_settings
from livetasks.selectors import result_render, result_token, task_group_for_token, task_snapshot
from livetasks.services import result_cancel
from livetasks.sweeping import live_tasks_sweep
from tests.support.layer import LayerListener

# Claims and conditional updates: their behaviour may differ between databases.
pytestmark = pytest.mark.engines
Status = TaskResultStatus


@pytest.fixture(autouse=True)
def output_dir(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "livetasks": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tmp_path / "outputs"},
        },
    }
    return tmp_path / "outputs"


def browser(user=None):
    """A request as a view gets it: a stored session, and a user (anonymous by default)."""
    request = RequestFactory().post("/")
    request.session = SessionStore()
    request.session.create()
    request.user = user or AnonymousUser()
    if user is not None:
        request.session["_auth_user_id"] = str(user.pk)
    return request


steps_run: list[int] = []


@live_task(cancellable=True)
def write_numbers(context: TaskContext, count: int, *, cancel_after: int = 0) -> None:
    with context.output("numbers.txt") as out:
        for number in range(1, count + 1):
            context.progress(done=number - 1, total=count, step="Writing numbers")
            steps_run.append(number)
            out.write(f"{number}\n")
            if number == cancel_after:  # the owner presses Cancel while this step runs
                assert result_cancel(context.result_id) is not None
    context.progress(done=count, total=count, step="Done")


@live_task
def breaks(context: TaskContext) -> None:
    context.progress(done=1, total=2)
    raise ValueError("no")


def run(task, result: LiveTaskResult) -> LiveTaskResult:
    steps_run.clear()
    task.task(str(result.pk))  # the Celery task, called as a worker would
    result.refresh()
    return result


def test_a_task_runs_to_successful_with_its_output(db, output_dir):
    result = write_numbers.enqueue(5, owner=browser())
    assert result.status == Status.READY and not result.is_finished
    result = run(write_numbers, result)
    assert result.status == Status.SUCCESSFUL and result.is_finished and result.has_output
    assert (result.done, result.total, result.step) == (5, 5, "Done")
    assert result.output_name == "numbers.txt"
    with storages["livetasks"].open(result.output_path) as stored:
        assert stored.read().decode() == "".join(f"{n}\n" for n in range(1, 6))


def test_cancel_mid_way_stops_within_one_step_and_keeps_nothing(db, output_dir):
    result = run(write_numbers, write_numbers.enqueue(100, owner=browser(), cancel_after=3))
    assert steps_run == [1, 2, 3]  # the progress() after the cancel raised
    assert result.status == Status.CANCELLED and not result.has_output
    assert result.output_path == "" and not any(output_dir.rglob("*.txt"))


def test_cancel_before_it_starts_means_it_never_runs(db):
    result = write_numbers.enqueue(3, owner=browser())
    assert result_cancel(result.pk).status == Status.CANCELLED
    assert run(write_numbers, result).status == Status.CANCELLED and steps_run == []
    assert result_cancel(result.pk) is None  # too late now


def test_a_task_that_is_not_cancellable_cannot_be_cancelled(db):
    result = breaks.enqueue(owner=browser())
    assert result_cancel(result.pk) is None


def test_an_exception_ends_failed_and_the_error_is_kept(db):
    result = run(breaks, breaks.enqueue(owner=browser()))
    assert result.status == Status.FAILED and "ValueError" in result.error


def test_a_message_delivered_twice_runs_once(db):
    result = run(write_numbers, write_numbers.enqueue(2, owner=browser()))
    version = result.version
    assert run(write_numbers, result).version == version and steps_run == []


def test_progress_is_stored_at_most_every_quarter_second_but_at_a_new_step_and_the_end(
    db, monkeypatch
):
    # The interval stretched: a loaded machine never lets it pass within the loop below.
    monkeypatch.setattr(livetasks.api, "PROGRESS_INTERVAL", 60)
    result = write_numbers.enqueue(0, owner=browser())
    result = run(write_numbers, result)  # claimed and done: make a running one by hand
    LiveTaskResult.objects.filter(pk=result.pk).update(status=Status.RUNNING, version=1)
    context = TaskContext(LiveTaskResult.objects.get(pk=result.pk))
    context.progress(done=1, total=1000, step="A")
    for done in range(2, 50):
        context.progress(done=done, total=1000, step="A")  # within the interval: not stored
    context.progress(done=50, total=1000, step="B")  # a new step: stored
    context.progress(done=1000, total=1000, step="B")  # the end: stored
    result.refresh()
    assert result.version == 4 and result.done == 1000


def test_progress_after_a_cancel_raises_even_when_throttled(db):
    result = write_numbers.enqueue(0, owner=browser())
    LiveTaskResult.objects.filter(pk=result.pk).update(status=Status.RUNNING)
    context = TaskContext(LiveTaskResult.objects.get(pk=result.pk))
    context.progress(done=1, total=10)
    result_cancel(result.pk)
    with pytest.raises(Cancelled):
        context.progress(done=2, total=10)  # throttled: no write, still the check


def test_each_change_is_published_after_commit_with_its_version(
    db, django_capture_on_commit_callbacks
):
    request = browser()
    result = write_numbers.enqueue(2, owner=request)
    listener = LayerListener(f"livetasks.{result.pk}")
    with django_capture_on_commit_callbacks(execute=True):
        run(write_numbers, result)
    versions = []
    while True:
        event = listener.receive()
        versions.append(event["version"])
        assert f'data-version="{event["version"]}"' in event["html"]["en"]
        assert set(event["html"]) == {"en", "pt-br"}
        if event["final"]:
            break
    result.refresh()
    assert versions == sorted(set(versions)) and versions[-1] == result.version


def test_only_the_owner_session_and_user_can_watch(db):
    ada = User.objects.create_user("ada")
    owner = browser(user=ada)
    result = write_numbers.enqueue(2, owner=owner)
    token = result_token(result, session=owner.session)
    assert task_group_for_token(token, session=owner.session) == f"livetasks.{result.pk}"
    assert task_snapshot(token, session=owner.session).version == result.version
    other = browser()
    assert task_group_for_token(token, session=other.session) is None
    assert task_snapshot(token, session=other.session) is None
    # The same browser, now logged in as someone else (the watcher key kept): refused.
    owner.session["_auth_user_id"] = str(User.objects.create_user("bob").pk)
    assert task_snapshot(token, session=owner.session) is None


def test_the_sweeper_ends_a_running_task_whose_worker_died(db, settings):
    settings.LIVETASKS_LEASE = 60
    result = write_numbers.enqueue(2, owner=browser())
    LiveTaskResult.objects.filter(pk=result.pk).update(status=Status.RUNNING)
    assert live_tasks_sweep()["taken back"] == 0  # alive: touched within the lease
    later = timezone.now() + timedelta(seconds=61)
    assert live_tasks_sweep(now=later)["taken back"] == 1
    result.refresh()
    assert result.status == Status.FAILED and result.error


def test_the_sweeper_deletes_old_outputs_and_results(db, settings, output_dir):
    settings.LIVETASKS_KEEP_SECONDS = 3600
    result = run(write_numbers, write_numbers.enqueue(2, owner=browser()))
    assert any(output_dir.rglob("numbers.txt"))
    assert live_tasks_sweep()["deleted"] == 0
    assert live_tasks_sweep(now=timezone.now() + timedelta(hours=2))["deleted"] == 1
    assert not LiveTaskResult.objects.filter(pk=result.pk).exists()
    assert not any(output_dir.rglob("numbers.txt"))


def test_an_unknown_token_names_nothing(db):
    assert task_group_for_token(str(uuid.uuid4()), session={}) is None


@live_task
def one_marked_step(context: TaskContext) -> None:
    context.progress(done=0, total=2, step=gettext_lazy("Progress"))  # a msgid the site has


def test_a_step_is_stored_in_the_site_language_and_published_in_each_reader_s(
    db, django_capture_on_commit_callbacks
):
    result = one_marked_step.enqueue(owner=browser())
    listener = LayerListener(f"livetasks.{result.pk}")
    with translation.override("pt-br"), django_capture_on_commit_callbacks(execute=True):
        run(one_marked_step, result)  # a worker whose language is not the site's
    assert LiveTaskResult.objects.get(pk=result.pk).step == "Progress"
    listener.receive()  # the claim
    stepped = listener.receive()
    assert "Progress</span>" in stepped["html"]["en"]
    assert "Progresso</span>" in stepped["html"]["pt-br"]


def test_the_sweeper_sends_again_a_task_whose_message_never_left(db, settings):
    settings.LIVETASKS_LEASE = 60
    result = write_numbers.enqueue(2, owner=browser())  # its send was never run (no commit)
    assert live_tasks_sweep()["sent again"] == 0  # not waiting long enough yet
    later = timezone.now() + timedelta(seconds=61)
    assert live_tasks_sweep(now=later)["sent again"] == 1
    assert live_tasks_sweep(now=later)["sent again"] == 0  # touched: left a lease alone
    result.refresh()
    assert result.status == Status.READY and result.version == 0  # nothing a watcher sees


@live_task(name="tests.returns_counts", result_template="tests/counted.html")
def returns_counts(context: TaskContext, *, give: object = None) -> object:
    context.progress(done=1, total=1)
    return give


def test_what_a_task_returns_is_kept_as_json_once_it_succeeded(db, settings, tmp_path):
    result = run(returns_counts, returns_counts.enqueue(owner=browser(), give={"n": (1, 2)}))
    assert result.status == Status.SUCCESSFUL
    assert result.return_value == {"n": [1, 2]}  # normalized as django.tasks does
    assert LiveTaskResult.objects.get(pk=result.pk).return_value == {"n": [1, 2]}
    running = returns_counts.enqueue(owner=browser(), give=5)
    assert running.return_value is None  # nothing before the end


@live_task(name="tests.returns_an_object")
def returns_an_object(context: TaskContext) -> object:
    return object()


def test_a_return_value_that_is_not_json_ends_failed(db):
    result = run(returns_an_object, returns_an_object.enqueue(owner=browser()))
    assert result.status == Status.FAILED and "TypeError" in result.error
    assert result.return_value is None


def test_the_final_card_includes_the_tasks_result_template(db, settings, tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "counted.html").write_text(
        "<p class=counted>{{ result.return_value.n }} counted</p>"
    )
    settings.TEMPLATES = [
        {**settings.TEMPLATES[0], "DIRS": [tmp_path, *settings.TEMPLATES[0]["DIRS"]]}
    ]
    result = returns_counts.enqueue(owner=browser(), give={"n": 7})
    assert "counted" not in result_render(result=result)  # not before the end
    result = run(returns_counts, result)
    assert "<p class=counted>7 counted</p>" in result_render(result=result)


def test_a_cancelled_task_keeps_how_far_it_said_it_got(db):
    result = run(write_numbers, write_numbers.enqueue(100, owner=browser(), cancel_after=3))
    # Its last progress(done=3), refused by the cancel, is what it got through.
    assert result.status == Status.CANCELLED and result.done == 3
    assert result.output_name == "numbers.txt" and not result.has_output
    html = result_render(result=result)
    assert "Cancelled: nothing was kept." in html and "3 of 100" in html


def test_owned_by_finds_a_sessions_own_results_and_no_one_elses(db):
    ada, bob = User.objects.create_user("ada"), User.objects.create_user("bob")
    anonymous, logged_in, stranger = browser(), browser(user=ada), browser()
    mine = write_numbers.enqueue(1, owner=anonymous)
    adas = write_numbers.enqueue(1, owner=logged_in)
    owned = LiveTaskResult.objects.owned_by
    assert list(owned(anonymous.session)) == [mine]
    assert list(owned(logged_in.session)) == [adas]
    assert not owned(stranger.session).exists() and not owned({}).exists()
    # The same browser, now logged in as someone else (the watcher key kept): not Ada's.
    logged_in.session["_auth_user_id"] = str(bob.pk)
    assert not owned(logged_in.session).exists()
    # An anonymous start stays the browser's after a login.
    anonymous.session["_auth_user_id"] = str(ada.pk)
    assert list(owned(anonymous.session)) == [mine]


def test_bad_settings_are_reported_by_the_system_check(db, settings):
    assert live_tasks_settings() == []
    settings.LIVETASKS_KEEP_SECONDS = 0
    settings.LIVETASKS_LEASE = 0.2  # below how often progress is stored: healthy tasks swept
    settings.LIVETASKS_SWEEP_INTERVAL = -1
    assert [error.id for error in run_checks() if error.id.startswith("livetasks.")] == [
        "livetasks.E001", "livetasks.E002", "livetasks.E003",
    ]  # fmt: skip
