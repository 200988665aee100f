"""A recording served over the wire: what :meth:`MockMassiveServer.replay` runs.

One daemon thread (``massive-rt-mock-replay-<server name>``) reads the recording (and its rotated
parts), paces its records by their recorded receive times (``speed`` times faster; None: as fast
as the clients read) and publishes the events of each recorded data frame as one frame, routed
like :meth:`MockMassiveServer.publish`: every authenticated connection of the record's market gets
the events that match its subscriptions, in recorded order. Events of every recorded connection
are merged in file order (a pool's recording replays as one feed).

Statuses the recording client made up locally (state changes, ``gap``, ``dropped``, the
recorder's own markers) are not sent: Massive never sends them, and a client that is replayed to
makes its own. They are counted in :attr:`ReplayHandle.statuses_skipped`. Status objects that
arrived inside a data frame were sent by the server, and go out again like any published status
(to every connection of the market).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import attrs

from .._json import loads
from ..errors import ConfigurationError
from ..recording import Record, RecordingEnd, RecordingError, RecordingReader, recording_parts
from ..recording.fileformat import KIND_DATA, KIND_OBJECTS

__all__ = ["ReplayHandle", "start_replay"]

logger = logging.getLogger(__name__)


class Publisher(Protocol):
    """What a replay needs of its server (a :class:`MockMassiveServer`)."""

    name: str

    def publish(self, events: Iterable[Mapping[str, Any]], market: str = "stocks", batch: int = 10) -> int:
        """Route events to the subscribed connections of ``market``; return how many were delivered."""
        ...

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds, re-checked on every server state change."""
        ...


@attrs.define(eq=False)
class ReplayHandle:
    """A running :meth:`MockMassiveServer.replay`: wait for its end with :meth:`join`, end it with :meth:`stop`.

    Counters are written by the replay thread; read them after :meth:`join` for final values.

    Attributes:
        records: records read from the file(s).
        frames: recorded data frames published.
        delivered: events delivered, summed over connections.
        statuses_skipped: recorded statuses and drop markers not sent (made up by the recording client).
        end: where the last file stopped (``complete=False``: cut; see :class:`RecordingEnd`).
        error: what ended the replay early (a :class:`CorruptRecordingError` ...), or None.
    """

    _thread: threading.Thread = attrs.field(alias="thread")
    _stop: threading.Event = attrs.field(alias="stop_event")
    _wake: Callable[[], None] = attrs.field(alias="wake")
    records: int = 0
    frames: int = 0
    delivered: int = 0
    statuses_skipped: int = 0
    end: RecordingEnd | None = None
    error: BaseException | None = None

    @property
    def running(self) -> bool:
        """True while the replay thread is alive."""
        return self._thread.is_alive()

    @property
    def finished(self) -> bool:
        """True once the whole recording was published (not stopped early, no error)."""
        return not self._thread.is_alive() and self.error is None and not self._stop.is_set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the replay to end (recording done, :meth:`stop`, an error or the server's close).

        Returns:
            True when it has ended.
        """
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop publishing and join the thread (idempotent, any thread)."""
        self._stop.set()
        self._wake()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)


def start_replay(
    server: Publisher, path: str | Path | Sequence[str | Path], speed: float | None, *, wait_for_subscribers: int,
    thread_name: str, wake: Callable[[], None], track: Callable[[threading.Thread], None],
    subscribed: Callable[[], int],
) -> ReplayHandle:  # fmt: skip
    """Open the recording (errors raise here, in the caller's thread) and start the replay thread.

    ``subscribed()`` counts connections with subscriptions (the replay starts once it reaches
    ``wait_for_subscribers``); ``wake`` wakes ``server.wait_for``; ``track`` registers the thread
    for the server's ``close`` to join.

    Raises:
        ConfigurationError: a bad ``speed`` or ``wait_for_subscribers``.
        RecordingError: the first file is not a readable recording.
    """
    if speed is not None and (
        isinstance(speed, bool) or not isinstance(speed, (int, float)) or not 0 < speed < float("inf")
    ):
        raise ConfigurationError(f"speed={speed!r} must be a positive number or None", field="speed")
    if isinstance(wait_for_subscribers, bool) or not isinstance(wait_for_subscribers, int) or wait_for_subscribers < 0:
        raise ConfigurationError(f"wait_for_subscribers={wait_for_subscribers!r} must be an int >= 0",
                                 field="wait_for_subscribers")  # fmt: skip
    paths = recording_parts(path) if isinstance(path, (str, Path)) else [Path(p) for p in path]
    if not paths:
        raise ConfigurationError("path: no recording files given", field="path")
    first = RecordingReader(paths[0])
    stop = threading.Event()

    def run() -> None:
        try:
            if wait_for_subscribers and not _wait_for_subscribers(server, stop, subscribed, wait_for_subscribers):
                return
            _publish_records(server, handle, _paced(_records(first, paths, handle), speed, stop), stop)
        except RecordingError as exc:
            handle.error = exc
            logger.error("mock %s: replay stopped: %s", server.name, exc)
        except Exception as exc:
            handle.error = exc
            logger.exception("mock %s: replay crashed", server.name)

    thread = threading.Thread(target=run, name=thread_name, daemon=True)
    handle = ReplayHandle(thread=thread, stop_event=stop, wake=wake)
    track(thread)
    thread.start()
    return handle


def _wait_for_subscribers(server: Publisher, stop: threading.Event, subscribed: Callable[[], int], n: int) -> bool:
    while not stop.is_set():
        if server.wait_for(lambda: stop.is_set() or subscribed() >= n, 1.0) and not stop.is_set():
            return True
    return False


def _records(first: RecordingReader, paths: list[Path], handle: ReplayHandle) -> Iterator[tuple[Record, str]]:
    """Every record of every part with its connection's market, setting ``handle.end`` per file."""
    for index, path in enumerate(paths):
        reader = first if index == 0 else RecordingReader(path)
        fallback = reader.header.markets[0] if reader.header.markets and reader.header.markets[0] else "stocks"
        for record in reader:
            yield record, reader.markets.get(record.connection) or fallback
        handle.end = reader.end
        if reader.end is not None and not reader.end.complete:
            logger.warning("mock replay: %s: %s; replayed up to byte %d of %d", path, reader.end.reason,
                           reader.end.offset, reader.end.size)  # fmt: skip


def _paced(
    records: Iterator[tuple[Record, str]], speed: float | None, stop: threading.Event
) -> Iterator[tuple[Record, str]]:
    origin: tuple[int, float] | None = None
    for item in records:
        if stop.is_set():
            return
        if speed is not None:
            at = item[0].received_at_ns
            if origin is None:
                origin = (at, time.monotonic())
            delay = origin[1] + (at - origin[0]) / 1e9 / speed - time.monotonic()
            if delay > 0 and stop.wait(delay):
                return
        yield item


def _publish_records(
    server: Publisher, handle: ReplayHandle, records: Iterator[tuple[Record, str]], stop: threading.Event
) -> None:
    for record, market in records:
        handle.records += 1
        if record.kind not in (KIND_DATA, KIND_OBJECTS):
            handle.statuses_skipped += 1
            continue
        objects = loads(record.payload)
        events = [objects] if isinstance(objects, dict) else [o for o in objects if isinstance(o, dict)]
        if not events:
            continue
        handle.frames += 1
        handle.delivered += server.publish(events, market, batch=len(events))
        if stop.is_set():
            return
