"""The backfill's worker threads: named daemons that run blocking fetches off the dispatcher.

Jobs go in through :meth:`FetchWorkers.submit`; each is passed to ``run(job)`` on one of
``count`` threads (``massive-rt-backfill-<name>-<i>``), then to ``done(job)``. So at most ``count``
fetches (HTTP requests) are in flight at once. :meth:`FetchWorkers.close` lets the queued jobs
through ``run`` (which sees the stop and returns at once) and ends every thread; a thread blocked
in a fetch ends when that fetch returns.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["THREAD_PREFIX", "FetchWorkers"]

logger = logging.getLogger(__name__)

THREAD_PREFIX = "massive-rt-backfill-"
_POLL = 0.5  # seconds a worker waits for a job before looking at the stop flag again

J = TypeVar("J")


class FetchWorkers(Generic[J]):
    """``count`` named daemon threads running ``run(job)`` then ``done(job)`` for each submitted job.

    ``run`` must not raise (it records its own failure in the job); ``done`` must be quick.
    """

    def __init__(self, name: str, count: int, run: Callable[[J], None], done: Callable[[J], None]) -> None:
        self._name = name
        self._count = count
        self._run = run
        self._done = done
        self._queue: queue.SimpleQueue[J | None] = queue.SimpleQueue()
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the threads (idempotent; not after :meth:`close`)."""
        with self._lock:
            if self._threads or self._closed.is_set():
                return
            self._threads = [
                threading.Thread(target=self._loop, name=f"{THREAD_PREFIX}{self._name}-{i}", daemon=True)
                for i in range(self._count)
            ]
            threads = list(self._threads)
        for thread in threads:
            thread.start()

    def submit(self, job: J) -> None:
        """Queue ``job`` for the next free thread (any thread)."""
        self._queue.put(job)

    def close(self) -> None:
        """Ask every thread to end once the jobs queued before are through (any thread, non-blocking)."""
        self._closed.set()
        for _ in range(self._count):
            self._queue.put(None)

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the threads to end; True if they all did."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in threads)

    @property
    def alive(self) -> int:
        """Threads still running."""
        with self._lock:
            return sum(1 for t in self._threads if t.is_alive())

    def _loop(self) -> None:
        while True:
            try:
                job = self._queue.get(timeout=_POLL)
            except queue.Empty:
                if self._closed.is_set():
                    return
                continue
            if job is None:
                return
            self._run(job)
            self._done(job)
