"""What one pushed status frame costs, per socket: ``python -m devtools.bench.frame_cost``.

One daphne holds ``--sockets`` page sockets (one session), all watching one feedback being
sent; ``--languages`` says which language each page speaks (its language cookie), spread
evenly. The feedback then moves ``--frames`` times (the send's progress), each move
rendered and published by this process as a worker would, and each waited for until every
socket had it. Prints daphne's CPU per frame per socket (its idle use taken off) and this
process's CPU per publish (the rendering), as one JSON object.
"""

import argparse
import asyncio
import json
import time

from websockets.asyncio.client import connect

from devtools.bench.stack import BenchStack, cpu_seconds


def version_of(frame: str) -> int:
    return int(frame.split('data-version="', 1)[1].split('"', 1)[0])


async def measure(args: argparse.Namespace, stack: BenchStack, url: str) -> dict:
    from importlib import import_module

    from django.conf import settings

    from feedback.delivery import SEND_STEPS, feedback_claim, feedback_mark_progress
    from feedback.services import feedback_create
    from feedback.tokens import feedback_token

    session = import_module(settings.SESSION_ENGINE).SessionStore()
    feedback = await asyncio.to_thread(
        feedback_create, email="cost@bench.test", message="Hi", enqueue=False
    )
    token = feedback_token(feedback.pk, session=session)
    await asyncio.to_thread(session.save)
    version = (await asyncio.to_thread(feedback_claim, feedback_id=feedback.pk)).version

    languages = args.languages.split(",")
    sockets = []
    for number in range(args.sockets):
        cookie = f"{settings.SESSION_COOKIE_NAME}={session.session_key}; "
        cookie += f"{settings.LANGUAGE_COOKIE_NAME}={languages[number % len(languages)]}"
        ws = await connect(url.replace("http://", "ws://") + "/ws/watch/", origin=url,
                           additional_headers={"Cookie": cookie}, ping_interval=None,
                           max_queue=None, compression=None)  # fmt: skip
        await ws.send(f"watch feedback/{token}")
        sockets.append(ws)
    latest = [-1] * len(sockets)
    arrived = asyncio.Event()

    async def read(index: int, ws) -> None:
        async for frame in ws:
            if "data-version=" in frame:
                latest[index] = version_of(frame)
                if min(latest) >= wanted:
                    arrived.set()

    wanted = version
    readers = [asyncio.create_task(read(i, ws)) for i, ws in enumerate(sockets)]
    await arrived.wait()

    daphne = stack.daphnes[0].pid
    idle_from, idle_started = cpu_seconds(daphne), time.monotonic()
    await asyncio.sleep(3)
    idle_rate = (cpu_seconds(daphne) - idle_from) / (time.monotonic() - idle_started)

    publishing = 0.0
    started, cpu_from = time.monotonic(), cpu_seconds(daphne)
    for number in range(args.frames):
        step = SEND_STEPS[number % len(SEND_STEPS)]

        def move(step: str = str(step), progress: int = number % 100) -> float:
            begun = time.thread_time()
            feedback_mark_progress(feedback_id=feedback.pk, step=step, progress=progress)
            return time.thread_time() - begun

        arrived.clear()
        wanted += 1
        publishing += await asyncio.to_thread(move)
        await asyncio.wait_for(arrived.wait(), 60)
    cpu = cpu_seconds(daphne) - cpu_from - idle_rate * (time.monotonic() - started)
    for task in readers:
        task.cancel()
    for ws in sockets:
        await ws.close()
    return {
        "sockets": args.sockets,
        "frames": args.frames,
        "languages": languages,
        "daphne_us_per_frame_per_socket": round(1e6 * cpu / (args.frames * args.sockets), 1),
        "publisher_ms_per_frame": round(1000 * publishing / args.frames, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=200)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--languages", default="en", help="comma-separated: en or en,pt-br")
    args = parser.parse_args()
    with BenchStack() as stack:
        # No re-reads or heartbeats inside the window: only the frames are counted.
        url = stack.start_web(REALTIME_RESYNC_SECONDS=3600, REALTIME_HEARTBEAT_SECONDS=600,
                              REALTIME_SILENCE_SECONDS=1200)  # fmt: skip
        print(json.dumps(asyncio.run(measure(args, stack, url))))


if __name__ == "__main__":
    main()
