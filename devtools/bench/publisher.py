"""A worker-like publisher, run as its own process by the bench.

``changes``: N progress changes on one feedback through the services, exactly
the worker's path (save the row, render the status partial, publish), paced at
an interval; notes when each change started and when ``publish`` was called.

``groups``: one update to each of many feedbacks' groups, straight through the
channel layer's ``group_send`` (rendered beforehand), as fast as it can; notes
when each ``group_send`` started.

Prints nothing on success; writes a JSON list of records to ``--out``.
"""

import argparse
import asyncio
import json
import os
import time


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_celery.settings")
    import django

    django.setup()


def run_changes(feedback_id: str, *, count: int, interval: float) -> list[dict]:
    from feedback import services

    records: dict[int, dict] = {}
    real_publish = services.publish

    def timed_publish(*, group: str, html: str, version: int, final: bool) -> bool:
        started = time.time()
        ok = real_publish(group=group, html=html, version=version, final=final)
        records.setdefault(version, {}).update(t_publish=started, t_published=time.time(), ok=ok)
        return ok

    services.publish = timed_publish  # instrumentation only: the call goes through unchanged
    feedback = services.feedback_claim(feedback_id=feedback_id)
    if feedback is None:
        raise SystemExit(f"feedback {feedback_id} could not be claimed")
    start = time.monotonic()
    for index in range(count):
        delay = start + index * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        changed_at = time.time()
        # A progress change, as the worker makes while it sends.
        feedback = services.feedback_mark_progress(
            feedback_id=feedback.pk, step=feedback.step, progress=index % 100
        )
        records.setdefault(feedback.version, {})["t_change"] = changed_at
    return [
        {"version": version, **fields}
        for version, fields in sorted(records.items())
        if "t_change" in fields
    ]


def run_groups(feedback_ids: list[str], *, concurrency: int) -> list[dict]:
    from channels.layers import get_channel_layer
    from django.db.models import F

    from feedback import services
    from feedback.models import Feedback
    from realtime.publish import status_event

    Feedback.objects.filter(pk__in=feedback_ids).update(version=F("version") + 1)
    payloads = []
    for feedback in Feedback.objects.filter(pk__in=feedback_ids).prefetch_related("events"):
        group = services.status_group(feedback.pk)
        html = services.feedback_render_status(feedback=feedback)
        event = status_event(html=html, version=feedback.version, final=False, group=group)
        payloads.append((group, event))

    async def send_all() -> list[dict]:
        layer = get_channel_layer()
        gate = asyncio.Semaphore(concurrency)
        records: list[dict] = []

        async def send(group: str, event: dict) -> None:
            async with gate:
                started = time.time()
                await layer.group_send(group, event)
                records.append({"group": group, "t_publish": started, "t_published": time.time()})

        await asyncio.gather(*(send(group, event) for group, event in payloads))
        return records

    return asyncio.run(send_all())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.bench.publisher")
    sub = parser.add_subparsers(dest="mode", required=True)
    changes = sub.add_parser("changes")
    changes.add_argument("--feedback", required=True)
    changes.add_argument("--count", type=int, required=True)
    changes.add_argument("--interval", type=float, required=True)
    groups = sub.add_parser("groups")
    groups.add_argument("--input", required=True, help="JSON list of feedback ids")
    groups.add_argument("--concurrency", type=int, default=50)
    for mode in (changes, groups):
        mode.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    _setup()
    if args.mode == "changes":
        records = run_changes(args.feedback, count=args.count, interval=args.interval)
    else:
        with open(args.input) as source:
            ids = json.load(source)
        records = run_groups(ids, concurrency=args.concurrency)
    with open(args.out, "w") as out:
        json.dump(records, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
