"""Which Celery worker nodes live, and how many processes each runs: Celery's remote control.

One mechanism, two of its commands, each answered by every living node's main process (not
the pool that sends, so a node busy with slow sends still answers):
- `presence`, a custom inspect command (Celery's public extension point): the node's life;
- Celery's own `stats`: its pool size. A beat job takes this census every
  WORKER_CENSUS_SECONDS and keeps it in Django's cache, for readers that cannot wait for a
  broadcast (the queue's pace, read on every status render).

Node names are usually stable (``-n worker@%h``), so a node that crashed and was restarted
at once answers under the same name. Each start of a node is therefore a *life* with an id
of its own, and a claim names the life that made it (`claimer()`): a claim whose node
answers with another life belongs to a dead life, and is taken back at once too.
"""

import logging
import os
import secrets
from collections.abc import Iterable

from celery import current_app, signals
from celery.worker.control import inspect_command
from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)

# The id of this node's life, set in its main process before the pool starts, so the
# pool's processes (where tasks run and claim) inherit it.
LIFE_ENV = "CELERY_WORKER_LIFE"
CENSUS_KEY = "workers:census"


@signals.worker_init.connect
def begin_life(**kwargs) -> None:
    os.environ[LIFE_ENV] = secrets.token_hex(6)


def this_life() -> str:
    return os.environ.get(LIFE_ENV, "")


@inspect_command()
def presence(state, **kwargs) -> dict:
    """This node's life."""
    return {"life": this_life()}


def claimer(hostname: str) -> str:
    """How a claim names the worker node making it: ``hostname/life``."""
    return f"{hostname}/{this_life()}"


def node_of(claimer: str) -> str:
    """The node name in a `claimer()` string."""
    return claimer.rpartition("/")[0] if "/" in claimer else claimer


def _ask(command: str, *, nodes: list[str] | None = None, limit: int | None = None):
    """Each answering node's reply to `command`, by node name; None when they cannot be asked."""
    app = current_app
    try:
        # A connection of its own: a pooled one may be a dead one left from before a Redis
        # restart, and waiting for replies must not hold one that submissions enqueue through.
        with app.connection_for_write() as connection:
            replies = app.control.broadcast(
                command,
                reply=True,
                destination=nodes,
                limit=len(nodes) if nodes else limit,
                timeout=settings.WORKER_PRESENCE_TIMEOUT,
                connection=connection,
            )
    except Exception:
        logger.warning("worker presence: could not ask the workers", exc_info=True)
        return None
    return {
        node: answer
        for reply in replies or ()
        for node, answer in reply.items()
        if isinstance(answer, dict)
    }


def workers_present(
    *, nodes: list[str] | None = None, limit: int | None = None
) -> dict[str, str] | None:
    """The life of each node that answers within WORKER_PRESENCE_TIMEOUT, by node name;
    None when they cannot be asked.

    `nodes`: ask only these, and stop as soon as all of them answered; `limit`: stop at
    that many answers.
    """
    answers = _ask("presence", nodes=nodes, limit=limit)
    if answers is None:
        return None
    return {node: str(answer.get("life", "")) for node, answer in answers.items()}


def workers_census() -> int | None:
    """Ask every node its pool size (Celery's `stats`), and keep the sum for
    `workers_processes`."""
    answers = _ask("stats")
    if answers is None:
        return None
    census = sum(
        int(answer.get("pool", {}).get("max-concurrency") or 1) for answer in answers.values()
    )
    cache.set(CENSUS_KEY, census, timeout=settings.WORKER_CENSUS_MAX_AGE)
    return census


def workers_processes() -> int | None:
    """Worker processes of the nodes that answered the last census; None if unknown."""
    try:
        return cache.get(CENSUS_KEY) or None
    except Exception:
        logger.warning("worker presence: census not read", exc_info=True)
        return None


def dead_workers(claimers: Iterable[str]) -> set[str]:
    """Those of `claimers` (`claimer()` strings, or bare node names) whose life is over.

    Over: the node does not answer, or answers with another life (it was restarted). When
    the workers cannot be asked, nobody is taken as dead: the lease still bounds the wait.
    """
    candidates = {name for name in claimers if name}
    if not candidates:
        return set()
    present = workers_present(nodes=sorted({node_of(name) for name in candidates}))
    if present is None:
        return set()
    dead = set()
    for name in candidates:
        life = present.get(node_of(name))
        if life is None or ("/" in name and name.rpartition("/")[2] != life):
            dead.add(name)
    return dead
