"""What a recording holds, in one pass: the analysis behind ``massive-rt inspect``.

:func:`summarize` reads a recording (and its rotated parts) and counts, without building typed
events: the time range of the records, events per ``ev`` code and per symbol, each connection's
records, gaps, drops and disconnections, and each file's health — whole, cut at a byte (a crash
mid-write) or corrupt at a byte (a :class:`CorruptRecordingError`; reading stops there, nothing
after it is counted).
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from .._json import loads
from .._util import snapshot_dict
from ..enums import ConnectionState
from ..protocol import event_symbol
from . import fileformat
from .replay import recording_parts
from .statuses import decode_status

__all__ = ["ConnectionSummary", "FileHealth", "RecordingSummary", "summarize"]

logger = logging.getLogger(__name__)

#: How often (in records) :func:`summarize` calls its ``progress`` callback.
PROGRESS_EVERY = 10_000


@attrs.frozen(kw_only=True)
class FileHealth:
    """One file of a recording.

    Attributes:
        path: the file.
        state: ``"whole"`` (ends with its end marker), ``"cut"`` (no end marker: read up to
            ``offset``) or ``"corrupt"`` (a checksum or framing error at ``offset``).
        offset: where whole data ends (``cut``) or the bad block starts (``corrupt``); the size when whole.
        size: the file's size in bytes.
        records: records read from it.
        detail: why it stopped (the cut or the error), empty when whole.
        codec: its blocks' compression, from its header: ``zstd``, ``gzip`` or ``none``.
    """

    path: str
    state: str
    offset: int
    size: int
    records: int
    detail: str = ""
    codec: str = ""

    def describe(self) -> str:
        """``whole``, ``cut at byte N of M`` or ``corrupt at byte N``."""
        if self.state == "whole":
            return "whole"
        if self.state == "cut":
            return f"cut at byte {self.offset} of {self.size}"
        return f"corrupt at byte {self.offset}"


@attrs.frozen(kw_only=True)
class ConnectionSummary:
    """One recorded connection: its market and what it recorded."""

    name: str
    market: str
    frames: int
    events: int
    statuses: int


@attrs.frozen(kw_only=True)
class RecordingSummary:
    """What :func:`summarize` found (see the module docs).

    Attributes:
        files: each file's health, in order.
        records: records read (data frames, statuses, drop markers).
        first_ns, last_ns: receive times of the first and last record (None when empty).
        events: market events in data frames (status objects inside frames not counted).
        by_ev: events per ``ev`` code.
        by_symbol: events per ``(ev, symbol)``.
        connections: per connection, in order of first appearance.
        gaps: ``(connection, gap seconds)`` per recorded ``gap`` status.
        disconnects: recorded transitions into ``backoff`` (a connection lost).
        dropped: events the recording client's overflow policy discarded (drop markers).
        recorder_dropped: items the recorder's own buffer lost.
    """

    files: tuple[FileHealth, ...]
    records: int
    first_ns: int | None
    last_ns: int | None
    events: int
    by_ev: dict[str, int]
    by_symbol: dict[tuple[str, str], int]
    connections: tuple[ConnectionSummary, ...]
    gaps: tuple[tuple[str, float], ...]
    disconnects: int
    dropped: int
    recorder_dropped: int

    @property
    def healthy(self) -> bool:
        """True unless a file is corrupt (a cut file is a crash's normal end, not damage)."""
        return all(f.state != "corrupt" for f in self.files)

    @property
    def complete(self) -> bool:
        """True when every file is whole (ends with the end marker a clean close writes)."""
        return all(f.state == "whole" for f in self.files)

    @property
    def health(self) -> str:
        """``ok`` (every file whole), ``cut`` (a file ends without its end marker: everything
        before its offset replays) or ``corrupt``."""
        return "corrupt" if not self.healthy else "ok" if self.complete else "cut"

    @property
    def codec(self) -> str:
        """The files' codec (``zstd``, ``gzip`` or ``none``; several, comma-separated, when the
        parts differ; empty when there is no file)."""
        return ", ".join(dict.fromkeys(f.codec for f in self.files))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``by_symbol`` keys as ``"ev.symbol"``)."""
        out = snapshot_dict(self)
        out["by_symbol"] = {f"{ev}.{sym}": n for (ev, sym), n in self.by_symbol.items()}
        out["healthy"] = self.healthy
        out["complete"] = self.complete
        out["health"] = self.health
        out["codec"] = self.codec
        return out


class _Tally:
    def __init__(self) -> None:
        self.records = 0
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.by_symbol: collections.Counter[tuple[str, str]] = collections.Counter()
        self.conns: dict[str, list[Any]] = {}  # name -> [market, frames, events, statuses]
        self.gaps: list[tuple[str, float]] = []
        self.disconnects = 0
        self.dropped = 0
        self.recorder_dropped = 0

    def add(self, record: fileformat.Record, market: str) -> None:
        self.records += 1
        at = record.received_at_ns
        if self.first_ns is None:
            self.first_ns = at
        self.last_ns = at if self.last_ns is None else max(self.last_ns, at)
        conn = self.conns.setdefault(record.connection, [market, 0, 0, 0])
        kind = record.kind
        if kind in (fileformat.KIND_DATA, fileformat.KIND_OBJECTS):
            objects = loads(record.payload)
            objects = [objects] if isinstance(objects, dict) else objects
            conn[1] += 1
            for obj in objects:
                ev = obj.get("ev") if isinstance(obj, dict) else None
                if not isinstance(ev, str) or ev == "status":
                    continue
                conn[2] += 1
                symbol = event_symbol(market, obj)
                self.by_symbol[(ev, "-" if symbol is None else str(symbol))] += 1
        elif kind == fileformat.KIND_DROPPED:
            conn[3] += 1
            self.dropped += int(loads(record.payload).get("dropped", 0))
        elif kind == fileformat.KIND_STATUS:
            conn[3] += 1
            self._status(record)

    def _status(self, record: fileformat.Record) -> None:
        status = decode_status(record.payload)
        if status.status == "gap" and status.gap_start_ns is not None and status.gap_end_ns is not None:
            self.gaps.append((record.connection, (status.gap_end_ns - status.gap_start_ns) / 1e9))
        elif status.status == "recorder_dropped":
            self.recorder_dropped += status.dropped
        elif status.status == "dropped":
            self.dropped += status.dropped
        elif status.status == "state" and status.state is ConnectionState.BACKOFF:
            self.disconnects += 1


def summarize(
    path: str | Path | Sequence[str | Path], progress: Callable[[int, int], None] | None = None
) -> RecordingSummary:
    """Read a recording (its rotated parts follow) and count what it holds.

    Args:
        path: the recording, or a sequence of files.
        progress: called as ``progress(records_so_far, ns_of_the_last)`` every
            :data:`PROGRESS_EVERY` records (a terminal's progress line).

    Raises:
        RecordingError: the first file is not a recording (a later corrupt block is reported in
            ``files``, not raised).
    """
    paths = recording_parts(path) if isinstance(path, (str, Path)) else [Path(p) for p in path]
    tally = _Tally()
    files: list[FileHealth] = []
    for file in paths:
        reader = fileformat.RecordingReader(file)
        fallback = reader.header.markets[0] if reader.header.markets and reader.header.markets[0] else "stocks"
        before = tally.records
        try:
            for record in reader:
                tally.add(record, reader.markets.get(record.connection) or fallback)
                if progress is not None and tally.records % PROGRESS_EVERY == 0:
                    progress(tally.records, record.received_at_ns)
        except fileformat.CorruptRecordingError as exc:
            files.append(FileHealth(path=str(file), state="corrupt", offset=exc.offset, size=file.stat().st_size,
                                    records=tally.records - before, detail=exc.reason,
                                    codec=reader.header.codec))  # fmt: skip
            break
        end = reader.end
        assert end is not None
        state, detail = ("whole", "") if end.complete else ("cut", end.reason)
        files.append(FileHealth(path=str(file), state=state, offset=end.offset, size=end.size, records=end.records,
                                detail=detail, codec=reader.header.codec))  # fmt: skip
    by_ev: collections.Counter[str] = collections.Counter()
    for (ev, _), n in tally.by_symbol.items():
        by_ev[ev] += n
    return RecordingSummary(
        files=tuple(files), records=tally.records, first_ns=tally.first_ns, last_ns=tally.last_ns,
        events=sum(by_ev.values()), by_ev=dict(by_ev.most_common()), by_symbol=dict(tally.by_symbol.most_common()),
        connections=tuple(ConnectionSummary(name=name, market=m, frames=f, events=e, statuses=s)
                          for name, (m, f, e, s) in tally.conns.items()),
        gaps=tuple(tally.gaps), disconnects=tally.disconnects, dropped=tally.dropped,
        recorder_dropped=tally.recorder_dropped,
    )  # fmt: skip
