"""Shared fixtures and helpers. Every server a test starts stops by itself; no thread outlives a test."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

THREAD_PREFIX = "massive-rt-"


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.002) -> bool:
    """Wait until ``predicate()`` is true or ``timeout`` passes; return the last result.

    For state that offers no event to wait on; prefer events, queues and conditions.
    """
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        if predicate():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return bool(predicate())
        pause.wait(min(interval, remaining))


def _library_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX) and t.is_alive()}


@pytest.fixture(autouse=True)
def no_thread_leaks() -> Iterator[None]:
    """Fail a test that leaves a ``massive-rt-*`` thread running after it ends."""
    before = _library_threads()
    yield
    leaked: set[threading.Thread] = set()

    def settled() -> bool:
        nonlocal leaked
        leaked = _library_threads() - before
        return not leaked

    if not wait_until(settled, timeout=10.0):
        pytest.fail(f"threads leaked by this test: {sorted(t.name for t in leaked)}")
