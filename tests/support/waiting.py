"""Waiting on a condition instead of sleeping a fixed time."""

import time
from collections.abc import Callable


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> object:
    """The condition's first truthy value; TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not {what} within {timeout:g}s")
        time.sleep(0.05)
    return value
