"""ReplaySource: a recording played back as an event source, behind the same surface as a client.

A daemon thread (``massive-rt-replay-<name>``) reads the file(s), paces records by their recorded
receive times (``speed`` times faster; None: as fast as the consumer takes them) and queues them
undecoded; the consumer decodes them, each with the decoder of its recorded connection, into the
events the live consumer got: same classes, fields, ``received_at_ns`` and ``connection``, with
the statuses (``gap``, ``dropped``, state changes ...) in place. The queue blocks the replay
thread when full: a replay never drops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs

from .._json import loads
from .._lifecycle import ThreadedSource
from .._util import snapshot_dict
from .._validate import field_error, require_number
from ..consumer import check_timeout, fast_loads
from ..enums import ConnectionState, Market, Overflow
from ..eventqueue import KIND_EVENT, KIND_OBJECTS, Item
from ..models import Event, StatusMessage
from ..protocol import Decoder, event_symbol, parse_channels, routes_to
from . import fileformat
from .recorder import part_path
from .statuses import decode_status

__all__ = ["ReplaySource", "ReplayStats", "recording_parts"]

logger = logging.getLogger(__name__)


def recording_parts(path: str | Path) -> list[Path]:
    """``path`` and the rotated parts written after it (``<stem>.1<suffix>``, ...), in order."""
    parts = [Path(path)]
    while part_path(path, len(parts)).exists():
        parts.append(part_path(path, len(parts)))
    return parts


def _as_ns(field: str, value: int | datetime | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return int(value.timestamp() * 1_000_000_000)
    if isinstance(value, bool) or not isinstance(value, int):
        raise field_error(field, f"{field}={value!r} must be None, an int (ns since the epoch) or a datetime")
    return value


class ReplaySource(ThreadedSource):
    """Replays a recording into an adapter (or ``get``/``iter_events``) as the same typed events.

    Args:
        path: the recording (its rotated parts follow automatically), or a sequence of files.
        speed: 1.0 = recorded pace, N = N times faster, None = as fast as possible.
        start, end: only records received in ``[start, end)`` (ns since the epoch or datetimes).
        channels: only data of these channels (statuses always pass); None: everything.
        queue_size: queue capacity in events.
        name: the source's name (its thread's; events keep their recorded ``connection``).

    ``end`` (a :class:`RecordingEnd`) says where the last file stopped; a cut file adds one
    ``replay_incomplete`` status naming the byte, a corrupt one a ``failed`` status whose
    ``error`` is the :class:`CorruptRecordingError` (and :attr:`error`).
    """

    _NOUN = "replay"
    _THREAD_PREFIX = "massive-rt-replay-"

    def __init__(
        self, path: str | Path | Sequence[str | Path], *, speed: float | None = 1.0,
        start: int | datetime | None = None, end: int | datetime | None = None,
        channels: Iterable[str] | None = None, queue_size: int = 100_000, name: str = "replay",
    ) -> None:  # fmt: skip
        if isinstance(path, (str, Path)):
            self._paths = recording_parts(path)
        else:
            self._paths = [Path(p) for p in path]
        if speed is not None:
            require_number("speed", speed, strict=True)
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise field_error("name", f"name={name!r} must be a non-empty string without whitespace")
        self._first = fileformat.RecordingReader(self._paths[0])  # fails now on a file that is not a recording
        header = self._first.header
        self._market = Market.coerce(header.markets[0] if header.markets and header.markets[0] else "stocks", "market")
        self._speed = speed
        self._start_ns = _as_ns("start", start)
        self._end_ns = _as_ns("end", end)
        self._channels = None if channels is None else frozenset(parse_channels(channels, self._market))
        self._name = name
        self._init_consumer(name, self._market, queue_size, Overflow.BLOCK, False, logger)
        self._decoders: dict[str, Decoder] = {}
        self._state = ConnectionState.NEW
        self._init_lifecycle()
        self._records = 0
        self.end: fileformat.RecordingEnd | None = None
        self.error: fileformat.RecordingError | None = None

    @property
    def name(self) -> str:
        """The source name."""
        return self._name

    @property
    def market(self) -> Market:
        """The market of the recording's first connection."""
        return self._market

    def connection_markets(self) -> dict[str, Market]:
        """The market of each recorded connection met so far (as its file declares it; known before
        any of its events is queued). Any thread."""
        return {connection: decoder.market for connection, decoder in list(self._decoders.items())}

    @property
    def header(self) -> fileformat.RecordingHeader:
        """The first file's header."""
        return self._first.header

    @property
    def state(self) -> ConnectionState:
        """NEW, STREAMING or STOPPED."""
        return self._state

    def wait_ready(self, timeout: float | None = None) -> ReplaySource:
        """Return at once once started (a file needs no handshake)."""
        check_timeout(timeout)
        self._require_started("wait_ready()")
        return self

    def subscribe(self, *channels: str, **_: Any) -> tuple[str, ...]:
        """Nothing to subscribe to: a recording holds what it holds (``channels=`` filters). Returns ()."""
        self._check_open()
        return ()

    def unsubscribe(self, *channels: str, **_: Any) -> tuple[str, ...]:
        """See :meth:`subscribe`. Returns ()."""
        self._check_open()
        return ()

    def set_inline(self, gate: Any) -> bool:
        """Replayed items always go through the queue (the adapter's dispatcher decodes them)."""
        return False

    def stop(self, timeout: float = 5.0) -> None:
        """Stop replaying; queued events stay available. Idempotent; any thread."""
        require_number("timeout", timeout)
        with self._life_lock:
            self._stop_requested.set()
            thread = self._thread
        if thread is None:
            self._state = ConnectionState.STOPPED
            self._queue.close()
            return
        if thread is not threading.current_thread():
            thread.join(timeout)

    def stats(self, max_message_age: float | None = None) -> ReplayStats:
        """Counters of the replay."""
        end = self.end
        return ReplayStats(
            name=self._name, state=self._state, records=self._records, events_decoded=sum(
                d.stats.events for d in list(self._decoders.values())), queue_frames=len(self._queue),
            complete=None if end is None else end.complete, stopped_at=None if end is None else end.offset,
            healthy=self.error is None, health_reason=None if self.error is None else self.error.message,
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"ReplaySource(name={self._name!r}, files={len(self._paths)}, speed={self._speed})"

    # ------------------------------------------------------------------ replay thread

    def _run(self) -> None:
        self._state = ConnectionState.STREAMING
        stopped = self._stop_requested.is_set
        put = self._queue.put
        try:
            for record in self._records_in_range():
                if stopped():
                    break
                self._records += 1
                item = self._item(record)
                if item is not None and not put(item, stopped):
                    break
        except fileformat.RecordingError as exc:
            self.error = exc
            # replay_error: lets a caller that reports the error itself (massive-rt replay) filter this.
            logger.error("[%s] replay stopped: %s", self._name, exc, extra={"replay_error": str(exc)})
            self._emit("failed", str(exc), error=exc)
        except Exception as exc:  # a record the format accepted but whose content is not what it should be
            error = fileformat.RecordingError(f"replay stopped: a record could not be replayed ({type(exc).__name__}: "
                                              f"{exc})")  # fmt: skip
            self.error = error
            logger.exception("[%s] replay crashed", self._name)
            self._emit("failed", str(error), error=error)
        finally:
            self._state = ConnectionState.STOPPED
            self._queue.close()

    def _records_in_range(self) -> Iterator[fileformat.Record]:
        start_ns, end_ns, speed = self._start_ns, self._end_ns, self._speed
        origin: tuple[int, float] | None = None
        wait = self._stop_requested.wait
        for index, path in enumerate(self._paths):
            reader = self._first if index == 0 else fileformat.RecordingReader(path)
            for record in reader:
                at = record.received_at_ns
                if start_ns is not None and at < start_ns:
                    continue
                if end_ns is not None and at >= end_ns:
                    self.end = reader.end
                    return  # later parts only hold later records
                if record.connection not in self._decoders:
                    market = reader.markets.get(record.connection) or self._market.value
                    self._decoders[record.connection] = Decoder(market, record.connection, loads=fast_loads)
                if speed is not None:
                    if origin is None:
                        origin = (at, time.monotonic())
                    delay = origin[1] + (at - origin[0]) / 1e9 / speed - time.monotonic()
                    if delay > 0 and wait(delay):
                        return
                yield record
            self.end = reader.end
            if reader.end is not None and not reader.end.complete:
                # recording_cut: lets a caller that reports the cut itself (massive-rt replay) filter this.
                logger.warning("[%s] %s: %s; replayed up to byte %d of %d", self._name, path, reader.end.reason,
                               reader.end.offset, reader.end.size, extra={"recording_cut": str(path)})  # fmt: skip
                self._emit("replay_incomplete", f"{path}: {reader.end.reason}; stopped at byte "
                           f"{reader.end.offset} of {reader.end.size}")  # fmt: skip

    def _item(self, record: fileformat.Record) -> Item | None:
        kind, payload = record.kind, record.payload
        if kind == fileformat.KIND_STATUS:
            status = decode_status(payload)
            return [KIND_EVENT, status, status.received_at_ns, 0]
        if kind == fileformat.KIND_DROPPED:
            dropped = loads(payload)
            status = StatusMessage(
                status="dropped", message=f"{dropped['dropped']} events dropped by the {dropped['overflow']} "
                "overflow policy", dropped=dropped["dropped"], received_at_ns=record.received_at_ns,
                connection=record.connection,
            )  # fmt: skip
            return [KIND_EVENT, status, record.received_at_ns, 0]
        channels = self._channels
        if channels is not None:
            objects = loads(payload)
            objects = [objects] if isinstance(objects, dict) else objects
            market = self._decoders[record.connection].market
            kept = [
                o for o in objects if isinstance(o, dict) and routes_to(channels, o.get("ev"), event_symbol(market, o))
            ]
            if not kept:
                return None
            return [KIND_OBJECTS, (record.connection, fileformat.KIND_OBJECTS, kept), record.received_at_ns, len(kept)]
        if kind == fileformat.KIND_OBJECTS:
            objects = loads(payload)
            return [KIND_OBJECTS, (record.connection, kind, objects), record.received_at_ns, len(objects) or 1]
        return [KIND_OBJECTS, (record.connection, kind, payload), record.received_at_ns, payload.count(b'"ev"') or 1]

    def _decode_item(self, item: Item) -> list[Event]:
        # Replayed data items carry (connection, record kind, payload): each connection has its own
        # decoder, so events keep the connection they were recorded on.
        if item[0] == KIND_OBJECTS:
            connection, kind, payload = item[1]
            decoder = self._decoders[connection]
            if kind == fileformat.KIND_DATA:
                return decoder.decode(payload, item[2])
            return decoder.decode_objects(payload, item[2])
        return [item[1]]

    def _emit(self, status: str, message: str, error: BaseException | None = None) -> None:
        event = StatusMessage(status=status, message=message, error=error, connection=self._name,
                              received_at_ns=time.time_ns())  # fmt: skip
        self._queue.put([KIND_EVENT, event, event.received_at_ns, 0])


@attrs.frozen(kw_only=True)
class ReplayStats:
    """Counters of a :class:`ReplaySource`; ``complete``/``stopped_at`` once the last file is read."""

    name: str
    state: ConnectionState
    records: int
    events_decoded: int
    queue_frames: int
    complete: bool | None
    stopped_at: int | None
    healthy: bool
    health_reason: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (for a health endpoint)."""
        return snapshot_dict(self)
