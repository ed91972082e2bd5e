"""Waiting on a condition a test or bench can only poll for (a file, an HTTP answer)."""

from __future__ import annotations

import time


def wait_for(predicate, timeout=10.0, interval=0.02, message="condition", *,
             error: type[BaseException] = AssertionError, ignore=()):
    """Poll *predicate* until it returns something truthy, and return that; raise
    *error* after *timeout* seconds. Exceptions in *ignore* count as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except ignore:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise error(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)
