"""Your place in the queue: data-ahead and the start estimate, live, at a bounded cost.

The browser test runs the real stack (two worker processes, daphne, Redis,
SMTP). The cost test counts, through the real channel layer, the publishes one
claim makes while a thousand queued feedback are watched.
"""

import asyncio
import re
import threading
import time
from datetime import timedelta

import pytest
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from feedback import delivery, queue, selectors
from feedback.models import Feedback, Status
from feedback.queue import Pace
from realtime.watchers import mark_watched
from workers import presence

# Records every status the page shows, with its place and estimate, as they change.
RECORDER = """() => {
  window.seen = [];
  const record = () => document.querySelectorAll(".status[data-status]").forEach((s) => {
    const eta = s.querySelector(".status__eta:not([hidden]) .status__eta-seconds");
    const entry = [s.id, s.dataset.status, s.dataset.ahead ?? null, eta ? eta.textContent : null,
                   s.dataset.aheadAtLeast ?? null];
    const last = window.seen.filter((e) => e[1] === s.id).pop();
    if (!last || JSON.stringify(last.slice(1)) !== JSON.stringify(entry))
      window.seen.push([Date.now(), ...entry]);
  });

  new MutationObserver(record).observe(document.body,
    { subtree: true, childList: true, attributes: true, characterData: true });
}"""


def test_pace_estimate_is_read_from_measured_sends_and_workers():
    pace = Pace(workers=2, busy=2, send_seconds=3.0)
    # Both busy: the next in line waits for one to finish, then each pair of places adds one send.
    assert pace.starts_in(ahead=0) == pytest.approx(1.5)
    assert pace.starts_in(ahead=4) == pytest.approx(7.5)
    assert Pace(workers=2, busy=0, send_seconds=3.0).starts_in(ahead=1) == 0
    assert Pace(workers=2, busy=2, send_seconds=None).starts_in(ahead=3) is None


@pytest.mark.django_db
def test_place_counts_the_queued_before_and_the_estimate_uses_measured_sends():
    now = timezone.now()
    for seconds in (2.0, 4.0):  # two measured sends: 3 s on average
        Feedback.objects.create(
            email="old@example.com",
            message="Hi",
            status=Status.SENT,
            claimed_at=now - timedelta(seconds=10),
            sent_at=now - timedelta(seconds=10 - seconds),
        )
    Feedback.objects.create(email="busy@example.com", message="Hi", status=Status.SENDING)
    rows = [Feedback.objects.create(email=f"{n}@example.com", message="Hi") for n in range(4)]
    Feedback.objects.create(email="gone@example.com", message="Hi", status=Status.CANCELLED)
    cache.delete(presence.CENSUS_KEY)  # no census (no worker counted)
    place = queue.feedback_place(feedback=rows[3])
    assert place.ahead == 3
    # No census: one worker assumed per send under way. It ends, then the 3 ahead: 4 × 3 s.
    assert place.starts_in == 4 * 3
    cache.set(presence.CENSUS_KEY, 2)  # as a census of the workers writes it
    # Two processes, one busy: (3 ahead + 1 busy - 2 + 1) × 3 s / 2 = 4.5 s, rounded up.
    assert queue.feedback_place(feedback=rows[3]).starts_in == 5
    cache.delete(presence.CENSUS_KEY)
    assert queue.feedback_place(feedback=rows[0]).ahead == 0
    context = queue.queue_context()
    assert context["line"].split() == [str(queue.epoch_ms(row.created_at)) for row in rows]
    assert context["count"] == 4


@pytest.mark.django_db
@pytest.mark.engines  # the count rides along as a window function
def test_the_event_lists_the_head_of_the_line_and_counts_it_whole(settings):
    """Its size is bounded: a page further back is told only "at least" (static/js/queue.js);
    its own status, rendered by the server, keeps its exact place."""
    settings.FEEDBACK_QUEUE_LINE_MAX = 3
    rows = [Feedback.objects.create(email=f"{n}@example.com", message="Hi") for n in range(5)]
    Feedback.objects.create(email="busy@example.com", message="Hi", status=Status.SENDING)
    context = queue.queue_context()
    assert context["line"].split() == [str(queue.epoch_ms(row.created_at)) for row in rows[:3]]
    assert context["count"] == 5
    html, queued = queue.queue_render()
    assert queued == 5 and 'data-count="5"' in html
    status = selectors.feedback_render_status(feedback=rows[4])
    assert 'data-ahead="4"' in status
    assert re.search(
        r'<span class="status__place-beyond" hidden>At least <span[^>]*>3</span>', status
    )
    Feedback.objects.filter(status=Status.QUEUED).update(status=Status.CANCELLED)
    assert queue.queue_context()["count"] == 0


def test_the_wait_between_events_grows_with_the_line_so_frames_per_second_stay_bounded():
    assert queue.queue_event_interval(queued=0) == queue.QUEUE_EVENT_INTERVAL
    assert queue.queue_event_interval(queued=1000) == 1000 / queue.QUEUE_EVENT_FANOUT
    for queued in (1, 10, 100, 1000, 100_000):
        interval = queue.queue_event_interval(queued=queued)
        assert interval >= queue.QUEUE_EVENT_INTERVAL
        # Each event goes to (at most) every queued watcher.
        frames = queued / interval
        assert frames <= max(queue.QUEUE_EVENT_FANOUT, queued / queue.QUEUE_EVENT_INTERVAL)
        if queued >= queue.QUEUE_EVENT_FANOUT * queue.QUEUE_EVENT_INTERVAL:
            assert frames <= queue.QUEUE_EVENT_FANOUT


@pytest.mark.django_db
def test_after_an_event_counting_n_queued_the_next_is_not_due_before_n_over_fanout(monkeypatch):
    queued = 1000
    Feedback.objects.bulk_create(
        Feedback(email=f"w{n}@example.com", message="Hi") for n in range(queued)
    )
    mark_watched([queue.QUEUE_GROUP], language="en")  # someone watches the line
    layer = get_channel_layer()
    queue.feedback_publish_queue()  # opens the layer's connection (see below)
    sends: list[str] = []
    original = layer.group_send

    async def counting_group_send(group, message):
        sends.append(group)
        return await original(group, message)

    monkeypatch.setattr(layer, "group_send", counting_group_send)
    events = queue._QueueEvents()
    before = time.monotonic()
    events.changed()  # the first change after a quiet while: published at once
    assert sends == [queue.QUEUE_GROUP] and events._due is None
    assert events._next >= before + queued / queue.QUEUE_EVENT_FANOUT
    try:
        events.changed()  # within the interval: one event is due, none goes now
        events.changed()
        assert len(sends) == 1 and events._due is not None
        first_timer = events._due
        first_timer.cancel()
        # A timer set while an event was being counted ends before the longer wait
        # that event asks for: it sets itself again instead of publishing.
        events._next = time.monotonic() + 60
        timer_thread = threading.Thread(target=events._publish_due)  # as a timer runs it
        timer_thread.start()
        timer_thread.join()
        assert len(sends) == 1 and events._due is not None and events._due is not first_timer
        assert events._due.interval > 30
    finally:
        if events._due is not None:
            events._due.cancel()


@pytest.mark.django_db
def test_a_rendered_status_reuses_a_recent_pace_and_counts_its_place_afresh():
    cache.delete(presence.CENSUS_KEY)
    first = Feedback.objects.create(email="first@example.com", message="Hi")
    queue.queue_pace_recent(max_age=0)  # read now, and kept
    cache.set(presence.CENSUS_KEY, 3)  # as a census of the workers writes it
    try:
        second = Feedback.objects.create(email="second@example.com", message="Hi")
        assert queue.queue_pace_recent(max_age=60).workers == 1  # the kept one
        assert queue.feedback_place(feedback=second, pace_max_age=60).ahead == 1
        assert queue.queue_pace_recent(max_age=0).workers == 3  # too old: read again
        assert queue.queue_pace().workers == 3  # and the queue-wide event reads it now
        assert queue.feedback_place(feedback=first, pace_max_age=60).ahead == 0
    finally:
        cache.delete(presence.CENSUS_KEY)


def test_seven_submissions_while_both_workers_are_busy_count_their_place_down(
    browser_page, start_daphne, start_worker, smtp_server
):
    from playwright.sync_api import expect

    send_delay = 3
    start_worker(concurrency=2, FEEDBACK_SEND_DELAY=send_delay, FEEDBACK_QUEUE_LINE_MAX=1)
    # The queue-wide event lists only the first in line: the last card, further back,
    # shows "at least 1 ahead" until it is first.
    server = start_daphne(FEEDBACK_RATE_LIMIT="off", FEEDBACK_QUEUE_LINE_MAX="1")
    page = browser_page
    page.goto(server.url)
    page.evaluate(RECORDER)
    celery = page.get_by_role("button", name=re.compile("With Celery"))
    emails = [f"q{n}@example.com" for n in range(1, 8)]
    for email in emails:
        page.get_by_label("Your email address").fill(email)
        page.get_by_label("Message").fill("Hello")
        celery.click()
        expect(page.locator(".submission", has_text=email)).to_be_visible()
        expect(celery).to_be_enabled()

    last = page.locator(".submission", has_text=emails[-1]).locator(".status")
    for email in emails:
        expect(page.locator(".submission", has_text=email).locator(".status")).to_have_attribute(
            "data-status", "sent", timeout=90_000
        )
    last_id = last.get_attribute("id")
    seen = [entry for entry in page.evaluate("window.seen") if entry[1] == last_id]
    statuses = [entry[2] for entry in seen]
    aheads = [int(entry[3]) for entry in seen if entry[2] == "queued" and entry[3] is not None]
    assert aheads and aheads[0] >= 2, seen
    assert aheads == sorted(aheads, reverse=True), seen  # only ever down
    assert aheads[-1] == 0, seen
    # Told "at least 1 ahead" (and no exact count) only until it is first in line: with
    # 3 or more ahead when it was rendered, the events of the next two claims list the
    # one before it, not itself.
    at_least = [i for i, entry in enumerate(seen) if entry[2] == "queued" and entry[5]]
    assert all(seen[i][5] == "1" and seen[i][3] is None for i in at_least), seen
    assert at_least or aheads[0] < 3, seen
    exact_zero = [i for i, entry in enumerate(seen) if entry[2] == "queued" and entry[3] == "0"]
    assert not at_least or max(at_least) < min(exact_zero), seen
    # Once sends were measured it also said about when it would start.
    assert any(entry[4] for entry in seen if entry[2] == "queued"), seen
    assert statuses.index("sending") > max(i for i, s in enumerate(statuses) if s == "queued")
    assert len(smtp_server.wait_for(7, timeout=30)) == 7

    # How close the estimates came: each shown estimate against when it really started.
    rows = {str(row.pk): row for row in Feedback.objects.all()}
    errors = []
    for at_ms, element_id, status, _ahead, eta, _at_least in page.evaluate("window.seen"):
        row = rows[element_id.removeprefix("status-")]
        if status == "queued" and eta:
            started = row.claimed_at.timestamp() * 1000
            errors.append((started - at_ms) / 1000 - int(eta))
    if errors:
        errors.sort()
        print(
            f"\nstart estimates: {len(errors)} shown; real start minus estimate: "
            f"median {errors[len(errors) // 2]:+.1f} s, "
            f"from {errors[0]:+.1f} to {errors[-1]:+.1f} s"
        )


@pytest.mark.django_db(transaction=True)
def test_claims_publish_a_bounded_number_of_times_with_a_thousand_queued_watchers(
    monkeypatch, settings
):
    """1,000 queued rows, each watched (its status marked watched, as a page socket does,
    and a channel of the real layer in the queue group):
    a burst of claims publishes each claimed one's status once and the queue-wide event
    at most once per claim (coalesced: the first at once, the rest when the line's
    interval ends, queue_event_interval), never per watcher, and every watcher hears
    the line as it is after the last claim, in an event of bounded size."""
    watchers, claims = 1000, 3
    now = timezone.now()
    rows = Feedback.objects.bulk_create(
        Feedback(email=f"w{n}@example.com", message="Hi", created_at=now) for n in range(watchers)
    )
    mark_watched(
        [*(selectors.status_group(row.pk) for row in rows), queue.QUEUE_GROUP], language="en"
    )
    layer = get_channel_layer()
    sends: list[str] = []
    original = layer.group_send

    async def counting_group_send(group, message):
        sends.append(group)
        return await original(group, message)

    # A publish tries once more when it finds its kept connection closed (an
    # earlier test restarted Redis): open it first, so that retry is not counted.
    queue.feedback_publish_queue()
    monkeypatch.setattr(layer, "group_send", counting_group_send)

    loop = asyncio.new_event_loop()
    try:
        channels = loop.run_until_complete(join(layer, watchers))
        claimed = []
        for _ in range(claims):
            first = Feedback.objects.filter(status=Status.QUEUED).order_by("created_at").first()
            assert delivery.feedback_claim(feedback_id=first.pk) is not None
            claimed.append(first.pk)
        heard = loop.run_until_complete(hear_all(layer, channels, line=watchers - claims))
        assert heard == watchers
        statuses = [group for group in sends if group != queue.QUEUE_GROUP]
        queue_events = sends.count(queue.QUEUE_GROUP)
        print(f"\n{claims} claims with {watchers} queued watchers: {len(sends)} group_send calls")
        assert statuses == [selectors.status_group(pk) for pk in claimed]
        assert 1 <= queue_events <= claims
    finally:
        loop.run_until_complete(leave(layer, channels))
        loop.close()


async def join(layer, watchers: int) -> list[str]:
    channels = [await layer.new_channel() for _ in range(watchers)]
    for channel in channels:
        await layer.group_add(queue.QUEUE_GROUP, channel)
    return channels


async def hear_all(layer, channels: list[str], *, line: int) -> int:
    """How many channels heard a queue-wide event counting `line` queued rows (the latest)."""
    line_max = settings.FEEDBACK_QUEUE_LINE_MAX

    async def one(channel):
        while True:
            event = await asyncio.wait_for(layer.receive(channel), timeout=30)
            assert event["type"] == "watch.broadcast" and 'id="feedback-queue"' in event["html"]
            listed = re.search(r'data-line="([^"]*)"', event["html"]).group(1).split()
            assert len(listed) == min(
                line_max, int(re.search(r'data-count="(\d+)"', event["html"]).group(1))
            )
            if re.search(r'data-count="(\d+)"', event["html"]).group(1) == str(line):
                return True

    return sum(await asyncio.gather(*(one(channel) for channel in channels)))


async def leave(layer, channels: list[str]) -> None:
    for channel in channels:
        await layer.group_discard(queue.QUEUE_GROUP, channel)
