"""Record any stream to a file and replay it as the same typed events (docs/recording.md).

- :class:`Recorder` tees what a source's consumers take (frames as received, statuses, drop
  markers) into a compressed, append-only, crash-safe file, on a thread of its own.
- :class:`ReplaySource` plays a recording back as an adapter source, paced or as fast as possible.
- :class:`RecordingReader` / :class:`RecordingWriter` are the file format itself (no threads).
- :func:`summarize` counts what a recording holds and checks its health (``massive-rt inspect``).
"""

from __future__ import annotations

from .fileformat import (
    CorruptRecordingError,
    Record,
    RecordingEnd,
    RecordingError,
    RecordingHeader,
    RecordingReader,
    RecordingWriter,
    default_codec,
)
from .recorder import Recorder, RecorderStats
from .replay import ReplaySource, ReplayStats, recording_parts
from .statuses import RecordedError, decode_status, encode_status
from .summary import ConnectionSummary, FileHealth, RecordingSummary, summarize

__all__ = [
    "ConnectionSummary",
    "CorruptRecordingError",
    "FileHealth",
    "RecordedError",
    "Record",
    "Recorder",
    "RecorderStats",
    "RecordingEnd",
    "RecordingError",
    "RecordingHeader",
    "RecordingReader",
    "RecordingSummary",
    "RecordingWriter",
    "ReplaySource",
    "ReplayStats",
    "decode_status",
    "default_codec",
    "encode_status",
    "recording_parts",
    "summarize",
]
