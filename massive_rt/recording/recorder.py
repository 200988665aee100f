"""Recorder: everything a source's consumers take, written to a recording on a thread of its own.

The recorder installs a *tap* on the source's consumers (every connection of a pool, present and
future): each queued item — a frame's bytes as received, objects a producer parsed, a status, a
``dropped`` marker — is handed to it, undecoded, at the moment the consumer takes it, so the file
holds exactly the sequence the consumer saw, in its order. The tap only appends to a buffer
bounded in bytes (``max_buffer_bytes``) and in items (``buffer_size``); it never waits for the
writer and never raises; when the buffer is full the item is counted as lost and a
``recorder_dropped`` status is written where the loss happened. The writer thread
(``massive-rt-recorder-<name>``) serialises, compresses and writes blocks, flushing at least
every ``flush_interval`` seconds, and rotates files hourly or by size.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import attrs

from .._json import dumps
from .._util import RateLimitedLog, snapshot_dict
from .._validate import field_error, require_int, require_name, require_number
from ..consumer import QueueConsumer
from ..errors import ClientClosedError
from ..eventqueue import KIND_DATA, KIND_DROPPED, KIND_EVENT, KIND_FRAMES, KIND_OBJECTS, Item
from ..models import StatusMessage
from . import fileformat
from .statuses import encode_status

__all__ = ["ITEM_OVERHEAD", "OBJECT_EVENT_BYTES", "STATUS_BYTES", "Recorder", "RecorderStats", "part_path"]

logger = logging.getLogger(__name__)

_ROTATIONS = (None, "hourly")
_HOUR_NS = 3_600 * 1_000_000_000

#: Bytes a buffered item is counted at beyond its payload (the item list, its tuple, the bytes
#: object's header: what CPython holds for it), so ``max_buffer_bytes`` bounds memory, not just payloads.
ITEM_OVERHEAD = 192
#: Bytes counted per event of an item of parsed objects (a synthetic or Redis source: not yet
#: serialised; the demo stream's events are ~120 bytes as JSON).
OBJECT_EVENT_BYTES = 256
#: Bytes counted for a status or a drop marker.
STATUS_BYTES = 512
_MIN_BUFFER_BYTES = 64 << 10


def part_path(path: str | Path, part: int) -> Path:
    """The file of rotation ``part`` of a recording at ``path``: ``path`` itself, then ``<stem>.<part><suffix>``."""
    path = Path(path)
    return path if part == 0 else path.with_name(f"{path.stem}.{part}{path.suffix}")


@attrs.frozen(kw_only=True)
class RecorderStats:
    """Counters of a :class:`Recorder`.

    Attributes:
        records: records written (data frames, statuses, drop markers).
        raw_bytes: their bytes before compression (record framing included).
        bytes_written: bytes on disk, every part.
        compression_ratio: ``raw_bytes / bytes_written`` (0 before anything was written).
        dropped: items lost because the buffer was full (each marked in the file).
        unrecordable: queued events that are not statuses (none today; counted, never silent).
        buffered: items waiting for the writer.
        buffered_bytes: their size as the buffer counts it (payload plus :data:`ITEM_OVERHEAD` each).
        max_buffer_bytes: the bound on ``buffered_bytes``.
        files: the files written, in order.
        error: why writing stopped (a disk error), or None.
    """

    records: int
    raw_bytes: int
    bytes_written: int
    compression_ratio: float
    dropped: int
    unrecordable: int
    buffered: int
    files: tuple[str, ...]
    error: str | None
    buffered_bytes: int = 0
    max_buffer_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (for a health endpoint)."""
        return snapshot_dict(self)


class Recorder:
    """Records a client, a pool, a synthetic source (or an adapter's source) to ``path``.

    Start it before the source (or the adapter) to catch everything; stop it after the adapter:
    ``stop()`` detaches the tap, writes what is buffered, and closes the file with its end marker.

    Args:
        source: anything with ``set_tap`` (a client, pool, synthetic or Redis source), or an
            adapter (its ``source`` is recorded).
        path: the file to create (refused if it exists); rotated parts go next to it
            (:func:`part_path`).
        codec: ``"zstd"`` (needs the ``record`` extra), ``"gzip"`` or ``"none"``; default zstd
            when installed, else gzip.
        rotate: ``"hourly"`` starts a new part when a record's receive time enters a new UTC hour.
        max_bytes: start a new part once a part holds this many bytes.
        buffer_size: items the buffer holds before the tap counts them as lost.
        max_buffer_bytes: bytes the buffer holds before the tap counts items as lost (at least
            64 KiB; default 64 MiB). A data frame counts its length, parsed objects
            :data:`OBJECT_EVENT_BYTES` per event, a status :data:`STATUS_BYTES`, each plus
            :data:`ITEM_OVERHEAD`. Whichever of the two bounds is reached first applies.
        flush_interval: seconds between block writes at most (what a crash can lose).
        level: the codec's compression level (None: zstd 1, gzip 1 — measured in
            docs/recording.md).
        name: the recorder's name (its thread's).
    """

    def __init__(
        self, source: Any, path: str | Path, *, codec: str | None = None, rotate: str | None = None,
        max_bytes: int | None = None, buffer_size: int = 100_000, max_buffer_bytes: int = 64 << 20,
        flush_interval: float = 0.2, level: int | None = None, name: str = "recorder",
    ) -> None:  # fmt: skip
        inner = getattr(source, "source", None)
        target = inner if inner is not None and hasattr(inner, "set_tap") else source
        if not hasattr(target, "set_tap"):
            raise field_error("source", f"{type(source).__name__} cannot be recorded (no set_tap)")
        codec = fileformat.default_codec() if codec is None else codec
        if codec not in fileformat.CODECS:
            raise field_error("codec", f"codec={codec!r} must be one of {', '.join(fileformat.CODECS)}")
        if codec == "zstd" and fileformat.default_codec() != "zstd":
            raise field_error("codec", "codec='zstd' needs zstandard: pip install 'massive-rt[record]'")
        if rotate not in _ROTATIONS:
            raise field_error("rotate", f"rotate={rotate!r} must be None or 'hourly'")
        if max_bytes is not None:
            require_int("max_bytes", max_bytes, 1024)
        require_int("buffer_size", buffer_size)
        require_int("max_buffer_bytes", max_buffer_bytes, _MIN_BUFFER_BYTES)
        require_number("flush_interval", flush_interval, strict=True)
        self._name = require_name("name", name)
        self._source = target
        self._path = Path(path)
        if self._path.exists():
            raise field_error("path", f"{self._path} exists; a recording never overwrites a file")
        self._codec = codec
        self._level = level
        self._rotate = rotate
        self._max_bytes = max_bytes
        self._capacity = buffer_size
        self._max_bytes_buffered = max_buffer_bytes
        self._wake_bytes = max_buffer_bytes >> 1
        self._flush_interval = flush_interval
        # (consumer, item, counted bytes), or (None, items lost, 0) for a loss marker.
        self._buffer: deque[tuple[QueueConsumer, Item, int] | tuple[None, int, int]] = deque()
        # Bytes accepted (taps only add) and bytes taken (the writer only adds): buffered is the
        # difference, with no lock between the taps and the writer (a lock costs more than the tap).
        self._bytes_in = 0
        self._bytes_out = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._life_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._lost = 0  # items lost since the last marker (tap side)
        self._dropped = 0
        self._unrecordable = 0
        self._writer: fileformat.RecordingWriter | None = None
        self._part = 0
        self._hour: int | None = None
        self._files: list[str] = []
        self._totals = [0, 0, 0]  # records, raw bytes, bytes written of closed parts
        self._error: str | None = None
        self._drop_log = RateLimitedLog(logger, logging.WARNING)

    @property
    def name(self) -> str:
        """The recorder's name."""
        return self._name

    def start(self) -> Recorder:
        """Open the file, install the tap and start the writer thread. Idempotent.

        Raises:
            ClientClosedError: the recorder was stopped (not restartable).
            RecordingError: the codec is not installed.
        """
        with self._life_lock:
            if self._stopping.is_set():
                raise ClientClosedError(f"recorder {self._name} was stopped; create a new one")
            if self._thread is not None:
                return self
            self._open_part()
            self._source.set_tap(self)
            self._thread = threading.Thread(target=self._run, name=f"massive-rt-recorder-{self._name}", daemon=True)
            self._thread.start()
        logger.info("recorder %s: recording to %s (%s)", self._name, self._path, self._codec)
        return self

    def stop(self, timeout: float = 5.0) -> bool:
        """Detach, write everything buffered, close the file. Idempotent; any thread.

        Returns False if the writer did not finish within ``timeout``.
        """
        require_number("timeout", timeout)
        with self._life_lock:
            first = not self._stopping.is_set()
            self._stopping.set()
            thread = self._thread
        if first and thread is not None:
            self._source.set_tap(None)
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def __enter__(self) -> Recorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stats(self) -> RecorderStats:
        """Counters so far (any thread)."""
        writer = self._writer
        records, raw, written = self._totals
        if writer is not None and not writer.closed:
            records, raw, written = records + writer.records, raw + writer.raw_bytes, written + writer.bytes_written
        return RecorderStats(
            records=records, raw_bytes=raw, bytes_written=written,
            compression_ratio=raw / written if written else 0.0, dropped=self._dropped,
            unrecordable=self._unrecordable, buffered=len(self._buffer), files=tuple(self._files), error=self._error,
            buffered_bytes=self._bytes_in - self._bytes_out, max_buffer_bytes=self._max_bytes_buffered,
        )  # fmt: skip

    @property
    def codec(self) -> str:
        """The codec the recording is written with: ``zstd``, ``gzip`` or ``none``."""
        return self._codec

    def __repr__(self) -> str:
        return f"Recorder(name={self._name!r}, path={str(self._path)!r}, codec={self._codec!r})"

    # ------------------------------------------------------------------ tap (consumer threads)

    def __call__(self, consumer: QueueConsumer, item: Item) -> None:
        """The tap itself (the source calls it with each item taken; an adapter over the source
        finds the recorder's :meth:`stats` through the source's ``tap``): never waits for the
        writer, never raises. Counts the item's bytes (see ``max_buffer_bytes``), never decodes it."""
        kind = item[0]
        if kind == KIND_DATA:
            size = len(item[1]) + ITEM_OVERHEAD
        elif kind == KIND_FRAMES:  # a read's frames: one item for the buffer, one record per frame in the file
            size = sum(map(len, item[1])) + ITEM_OVERHEAD * len(item[1])
        elif kind == KIND_OBJECTS:
            size = item[3] * OBJECT_EVENT_BYTES + ITEM_OVERHEAD
        else:
            size = STATUS_BYTES + ITEM_OVERHEAD
        # Taps run one at a time (on the consuming thread: the adapter's dispatcher, or a reader under its gate);
        # the counters below are each written by one side only (taps: _bytes_in, _lost; writer: _bytes_out).
        held = self._bytes_in - self._bytes_out + size
        buffer = self._buffer
        if held > self._max_bytes_buffered or len(buffer) >= self._capacity:
            self._lost += 1
            self._dropped += 1
            if not self._wake.is_set():  # set() takes a lock: not once per item of a burst
                self._wake.set()
            return
        if self._lost:
            buffer.append((None, self._lost, 0))
            self._lost = 0
        buffer.append((consumer, item, size))
        self._bytes_in += size
        if held > self._wake_bytes and not self._wake.is_set():  # half full: the writer need not wait its tick
            self._wake.set()

    # ------------------------------------------------------------------ writer thread

    def _run(self) -> None:
        next_flush = time.monotonic() + self._flush_interval
        try:
            while True:
                stopping = self._stopping.is_set()
                self._write_buffered()
                if stopping:
                    lost, self._lost = self._lost, 0  # the tap is detached by now
                    if lost:
                        self._buffer.append((None, lost, 0))
                        self._write_buffered()
                    return
                now = time.monotonic()
                if now >= next_flush:
                    self._flush()
                    next_flush = now + self._flush_interval
                self._wake.wait(min(0.05, max(0.0, next_flush - now)))
                self._wake.clear()
        except Exception as exc:
            self._error = f"{type(exc).__name__}: {exc}"
            logger.exception("recorder %s: writing stopped", self._name)
            self._source.set_tap(None)
        finally:
            self._close_part()

    def _write_buffered(self) -> None:
        # The hot loop of the writer thread: it shares the GIL with the consumer it records, so
        # per item it does only what it must (the consumer's name when it changes, one packing
        # call per read: the taps see a read's frames as one item, queued or delivered inline);
        # rotation and the rarer kinds take _write_item.
        buffer = self._buffer
        popleft = buffer.popleft
        last: object = None
        known = ("", "")
        hourly = self._rotate == "hourly"
        writer = self._current_writer()
        item: Any
        for _ in range(len(buffer)):
            consumer, item, size = popleft()
            self._bytes_out += size
            if consumer is None:
                self._write_lost(item)
                writer = self._current_writer()
                continue
            if consumer is not last:
                last, known = consumer, _consumer_name(consumer)
            kind = item[0]
            if not hourly and kind == KIND_FRAMES:
                writer = self._write_frames(writer, item[2], item[1], known, consumer, item)
            elif not hourly and kind == KIND_DATA and item[1].__class__ is bytes:
                writer = self._write_frames(writer, item[2], [item[1]], known)
            else:
                try:
                    self._write_item(consumer, item, known)
                except (TypeError, ValueError, UnicodeError, OverflowError) as exc:
                    self._unrecordable_item(exc)
                writer = self._current_writer()

    def _write_frames(
        self, writer: fileformat.RecordingWriter, received_at_ns: int, frames: list[Any], known: tuple[str, str],
        consumer: QueueConsumer | None = None, item: Item | None = None,
    ) -> fileformat.RecordingWriter:  # fmt: skip
        """Data frames with one receive time in one packing call (``item``: the read they came in,
        written frame by frame through :meth:`_write_item` if a frame is text, not bytes).
        Returns the writer to go on with (the next part's after a rotation by size)."""
        try:
            try:
                wrote = writer.append_many(received_at_ns, known[0], fileformat.KIND_DATA, frames, known[1])
            except TypeError:
                if consumer is None or item is None:
                    raise
                self._write_item(consumer, item, known)  # a frame as text: encoded one by one
                return self._current_writer()
        except (TypeError, ValueError, UnicodeError, OverflowError) as exc:
            self._unrecordable_item(exc)
            return self._current_writer()
        max_bytes = self._max_bytes
        if wrote and max_bytes is not None and writer.bytes_written >= max_bytes:
            return self._next_part()
        return writer

    def _unrecordable_item(self, exc: Exception) -> None:
        self._unrecordable += 1
        self._drop_log("recorder %s: an item could not be recorded (%s: %s); %d so far",
                       self._name, type(exc).__name__, exc, self._unrecordable)  # fmt: skip

    def _current_writer(self) -> fileformat.RecordingWriter:
        writer = self._writer
        assert writer is not None
        return writer

    def _write_item(self, consumer: QueueConsumer, item: Item, known: tuple[str, str]) -> None:
        """Any item, through :meth:`_append` (rotation by the hour, statuses, objects, text frames)."""
        kind, payload = item[0], item[1]
        if kind == KIND_DATA:
            data = payload if payload.__class__ is bytes else payload.encode()
            self._append(item[2], known[0], fileformat.KIND_DATA, data, known[1])
        elif kind == KIND_FRAMES:
            for frame in payload:
                data = frame if frame.__class__ is bytes else frame.encode()
                self._append(item[2], known[0], fileformat.KIND_DATA, data, known[1])
        elif kind == KIND_OBJECTS:
            self._append(item[2], known[0], fileformat.KIND_OBJECTS, dumps(payload), known[1])
        else:
            self._write_other(consumer, item, known)

    def _write_other(self, consumer: QueueConsumer, item: Item, known: tuple[str, str]) -> None:
        kind, payload, received_at_ns = item[0], item[1], item[2]
        if kind == KIND_DROPPED:
            data = dumps({"dropped": payload, "overflow": consumer.overflow_policy.value})
            self._append(received_at_ns, known[0], fileformat.KIND_DROPPED, data, known[1])
        elif kind == KIND_EVENT and isinstance(payload, StatusMessage):
            self._append(received_at_ns, known[0], fileformat.KIND_STATUS, encode_status(payload), known[1])
        else:
            self._unrecordable += 1

    def _write_lost(self, lost: int) -> None:
        now = time.time_ns()
        status = StatusMessage(status="recorder_dropped", message=f"the recorder's buffer was full: {lost} items "
                               "were not recorded here", dropped=lost, received_at_ns=now,
                               connection=self._name)  # fmt: skip
        self._append(now, self._name, fileformat.KIND_STATUS, encode_status(status), "")
        self._drop_log("recorder %s: buffer full (%d items or %d bytes): %d items not recorded; %d in total",
                       self._name, self._capacity, self._max_bytes_buffered, lost, self._dropped)  # fmt: skip

    def _append(self, received_at_ns: int, connection: str, kind: int, data: bytes, market: str) -> None:
        writer = self._writer
        assert writer is not None
        if self._rotate == "hourly":
            hour = received_at_ns // _HOUR_NS
            if self._hour is None:
                self._hour = hour
            elif hour != self._hour:
                self._hour = hour
                writer = self._next_part()
        if writer.append(received_at_ns, connection, kind, data, market) and (
            self._max_bytes is not None and writer.bytes_written >= self._max_bytes
        ):
            self._next_part()

    def _flush(self) -> None:
        writer = self._writer
        if writer is not None and writer.pending_bytes:
            writer.flush()
            if self._max_bytes is not None and writer.bytes_written >= self._max_bytes:
                self._next_part()

    def _next_part(self) -> fileformat.RecordingWriter:
        self._close_part()
        self._part += 1
        return self._open_part()

    def _open_part(self) -> fileformat.RecordingWriter:
        source = self._source
        clients = source.clients() if hasattr(source, "clients") else (source,)
        markets = tuple(dict.fromkeys(getattr(getattr(c, "market", None), "value", "") for c in clients))
        subscriptions = tuple(sorted({ch for c in clients for ch in getattr(c, "subscriptions", ())}))
        header = fileformat.RecordingHeader(
            massive_rt_version=_version(), codec=self._codec, started_at_ns=time.time_ns(), markets=markets,
            connections=tuple(getattr(c, "name", "") for c in clients), subscriptions=subscriptions, part=self._part,
        )  # fmt: skip
        path = part_path(self._path, self._part)
        self._writer = fileformat.RecordingWriter(path, header, level=self._level)
        self._files.append(str(path))
        return self._writer

    def _close_part(self) -> None:
        writer = self._writer
        if writer is not None and not writer.closed:
            writer.close()
            self._totals = [self._totals[0] + writer.records, self._totals[1] + writer.raw_bytes,
                            self._totals[2] + writer.bytes_written]  # fmt: skip


def _consumer_name(consumer: QueueConsumer) -> tuple[str, str]:
    """(name, market) of a consumer, as its records declare it."""
    return getattr(consumer, "name", ""), getattr(getattr(consumer, "market", None), "value", "")


def _version() -> str:
    from .. import __version__  # at call time: the package imports this module while it loads

    return __version__
