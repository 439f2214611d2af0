"""The core channel layer (CHANNEL_LAYER=core) survives an idle status socket.

RedisChannelLayer waits for messages with BZPOPMIN for up to `brpop_timeout`
(5 s) on the server; redis-py 8 gives every read 5 s by default. On a busy
machine the empty answer to an idle wait arrived after the client had given up:
the read timed out and the socket's consumer died (close 1011, every later
update lost: the bench's "push-core delivered 0/20"). The settings give the
layer's reads room past the wait; these tests build the layer from them.
"""

import os
import subprocess
import sys

from devtools.processes import REPO_ROOT

# Runs in a fresh interpreter: CHANNEL_LAYER is read when the settings load.
IDLE_THEN_MESSAGE = """
import asyncio, time
import django
django.setup()
from channels.layers import get_channel_layer
from channels_redis.core import RedisChannelLayer

layer = get_channel_layer()
assert isinstance(layer, RedisChannelLayer), type(layer)
timeout = layer.create_pool(0).connection_kwargs["socket_timeout"]
print("socket_timeout", timeout, "brpop_timeout", layer.brpop_timeout)

async def main():
    channel = await layer.new_channel()
    async def later():
        await asyncio.sleep(layer.brpop_timeout + 1.5)  # past one whole idle wait
        await layer.send(channel, {"type": "status.update", "n": 1})
    sender = asyncio.create_task(later())
    started = time.monotonic()
    message = await asyncio.wait_for(layer.receive(channel), 30)
    await sender
    print("received", message["n"], "after", round(time.monotonic() - started, 1))

asyncio.run(main())
"""


def _run_core(code: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    env.update(DJANGO_SETTINGS_MODULE="django_celery.settings", CHANNEL_LAYER="core")
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


def test_core_layer_reads_wait_longer_than_its_blocking_pop_and_survive_an_idle_wait():
    result = _run_core(IDLE_THEN_MESSAGE)
    assert result.returncode == 0, result.stderr[-3000:]
    first, second = result.stdout.splitlines()[:2]
    _, socket_timeout, _, brpop_timeout = first.split()
    # Room past the server's wait, even when the machine is busy.
    assert float(socket_timeout) >= float(brpop_timeout) + 5, first
    assert second.startswith("received 1 after"), result.stdout
