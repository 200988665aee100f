"""The start/stop lifecycle of a source that runs one thread of its own.

A client, the synthetic source and the Redis source share it: ``start()`` is idempotent and starts
one named daemon thread, a stopped source cannot be restarted (:class:`ClientClosedError`), and a
source is a context manager. What the thread does, and how ``stop()`` ends it, stays with each.
"""

from __future__ import annotations

import logging
import threading
from typing import TypeVar

from .consumer import QueueConsumer
from .errors import ClientClosedError

__all__ = ["ThreadedSource"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

_Source = TypeVar("_Source", bound="ThreadedSource")


class ThreadedSource(QueueConsumer):
    """A :class:`QueueConsumer` whose events come from one thread it starts (``_run``).

    Subclasses call :meth:`_init_lifecycle` in ``__init__``, set ``_NOUN`` (for messages) and
    ``_THREAD_PREFIX``, implement ``_run`` and ``stop``, and may override :meth:`_before_thread`.
    """

    _NOUN = "source"
    _THREAD_PREFIX = "massive-rt-source-"
    _name: str

    def _init_lifecycle(self) -> None:
        # start/stop only; re-entrant because a signal handler may call stop() while this very
        # thread is inside start() (Thread.start() waits, and handlers run).
        self._life_lock = threading.RLock()
        self._stop_requested = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self: _Source) -> _Source:
        """Start the source's thread and return at once. Idempotent.

        Raises:
            ClientClosedError: the source was stopped (sources are not restartable).
        """
        self._check_usable()
        with self._life_lock:
            if self._stop_requested.is_set():
                raise ClientClosedError(f"{self._NOUN} was stopped; create a new one", connection=self._name)
            if self._thread is not None:
                return self
            self._before_thread()
            self._thread = threading.Thread(target=self._run, name=self._THREAD_PREFIX + self._name, daemon=True)
            self._thread.start()
        return self

    def clients(self: _Source) -> tuple[_Source, ...]:
        """Event sources for the adapter: this source alone."""
        return (self,)

    def _before_thread(self) -> None:
        """Called by :meth:`start` under the lifecycle lock, just before the thread starts."""

    def _run(self) -> None:
        raise NotImplementedError

    def _require_started(self, before: str) -> None:
        if self._thread is None:
            raise ClientClosedError(f"call start() before {before}", connection=self._name)

    def _check_consumable(self) -> None:
        self._check_usable()
        if self._thread is None and not self._stop_requested.is_set():
            raise ClientClosedError("call start() first", connection=self._name)

    def _check_open(self) -> None:
        self._check_usable()
        if self._stop_requested.is_set():
            raise ClientClosedError(f"{self._NOUN} was stopped; create a new one", connection=self._name)

    def __enter__(self: _Source) -> _Source:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout: float = 5.0) -> None:
        raise NotImplementedError
