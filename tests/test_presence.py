"""Worker presence (workers/presence.py): Celery's remote control, with real workers."""

import signal

from workers import presence


def test_a_living_node_answers_with_its_life(start_worker):
    worker = start_worker(concurrency=2)
    present = presence.workers_present(nodes=[worker.hostname])
    assert present is not None and set(present) == {worker.hostname}
    life = present[worker.hostname]
    assert life
    assert presence.dead_workers([worker.hostname, f"{worker.hostname}/{life}"]) == set()


def test_a_killed_node_is_dead(start_worker):
    worker = start_worker()
    name = worker.hostname
    assert presence.dead_workers([name]) == set()
    worker.kill_group(signal.SIGKILL)
    worker.wait(10)
    assert presence.dead_workers([name, ""]) == {name}


def test_a_node_nobody_has_heard_of_is_dead():
    assert presence.dead_workers(["never-started@nowhere"]) == {"never-started@nowhere"}
    assert presence.dead_workers([]) == set()


def test_a_node_restarted_under_the_same_name_ends_its_previous_life(start_worker):
    worker = start_worker()
    name = worker.hostname
    first = f"{name}/{presence.workers_present(nodes=[name])[name]}"
    assert presence.dead_workers([first]) == set()
    worker.kill_group(signal.SIGKILL)
    worker.wait(10)
    worker.start()  # the same command line: the same node name, at once
    assert worker.hostname == name
    second = f"{name}/{presence.workers_present(nodes=[name])[name]}"
    assert second != first
    # What the first life claimed is taken back at once; the new life keeps its own.
    assert presence.dead_workers([first, second]) == {first}


def test_the_census_counts_every_nodes_processes_for_the_queue(start_worker, settings):
    start_worker(concurrency=2)
    start_worker(concurrency=1)
    assert presence.workers_census() == 3
    assert presence.workers_processes() == 3
