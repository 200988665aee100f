"""The recorder's buffer is bounded in bytes (``max_buffer_bytes``) as well as in items: a burst
beyond it is counted, marked in the file, and never waits for the writer. Pure tap calls (no server):
tapping before ``start()`` holds the writer back, so the counts are exact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import massive_rt as mrt
from massive_rt.eventqueue import KIND_DATA as QUEUED_DATA
from massive_rt.eventqueue import KIND_EVENT as QUEUED_EVENT
from massive_rt.eventqueue import KIND_OBJECTS as QUEUED_OBJECTS
from massive_rt.recording import RecordingReader, decode_status
from massive_rt.recording.fileformat import KIND_DATA, KIND_STATUS
from massive_rt.recording.recorder import ITEM_OVERHEAD, OBJECT_EVENT_BYTES, STATUS_BYTES


class _TapOnly:
    """The smallest recordable source: it only takes a tap."""

    name = "burst"

    def __init__(self) -> None:
        self.tap: Any = None

    def set_tap(self, tap: Any) -> None:
        self.tap = tap

    def clients(self) -> tuple[_TapOnly, ...]:
        return (self,)


def frame(i: int, size: int) -> bytes:
    body = b'[{"ev":"T","sym":"A","q":%d}]' % i
    return body + b" " * (size - len(body))


def test_a_burst_beyond_max_buffer_bytes_is_dropped_counted_and_marked_exactly(tmp_path: Path) -> None:
    source = _TapOnly()
    path = tmp_path / "burst.mrt"
    bound = 64 << 10
    recorder = mrt.Recorder(source, path, max_buffer_bytes=bound, buffer_size=1_000_000)
    per_item = 1_000 + ITEM_OVERHEAD
    fits = bound // per_item  # 54 frames of 1,000 bytes
    sent = 1_000
    for i in range(sent):  # the writer is not running yet: nothing leaves the buffer
        recorder(source, [QUEUED_DATA, frame(i, 1_000), i, 1])

    stats = recorder.stats()
    assert (stats.buffered, stats.buffered_bytes, stats.dropped) == (fits, fits * per_item, sent - fits)
    assert stats.buffered_bytes <= stats.max_buffer_bytes == bound

    recorder.start()
    assert recorder.stop()
    records = list(RecordingReader(path))
    data = [r for r in records if r.kind == KIND_DATA]
    lost = [decode_status(r.payload) for r in records if r.kind == KIND_STATUS]
    assert [r.payload for r in data] == [frame(i, 1_000) for i in range(fits)]
    assert [(s.status, s.dropped) for s in lost] == [("recorder_dropped", sent - fits)]
    assert recorder.stats().buffered_bytes == 0


def test_the_byte_bound_frees_as_the_writer_takes_items_and_the_loss_is_marked_where_it_happened(
    tmp_path: Path,
) -> None:
    source = _TapOnly()
    path = tmp_path / "refill.mrt"
    recorder = mrt.Recorder(source, path, max_buffer_bytes=64 << 10)
    big = frame(0, (64 << 10) - ITEM_OVERHEAD)  # exactly the bound: alone it fits
    recorder(source, [QUEUED_DATA, big, 1, 1])
    recorder(source, [QUEUED_DATA, frame(1, 10), 2, 1])  # no room left: lost
    recorder.start()
    assert recorder.stop()

    kinds = [(r.kind, r.received_at_ns) for r in RecordingReader(path)]
    assert kinds[0] == (KIND_DATA, 1)
    assert [k for k, _ in kinds] == [KIND_DATA, KIND_STATUS]
    assert recorder.stats().dropped == 1


def test_parsed_objects_and_statuses_count_at_their_documented_estimates(tmp_path: Path) -> None:
    source = _TapOnly()
    recorder = mrt.Recorder(source, tmp_path / "est.mrt")
    recorder(source, [QUEUED_OBJECTS, [{"ev": "T"}] * 3, 1, 3])  # 3 events
    recorder(source, [QUEUED_EVENT, mrt.StatusMessage(status="state", message="", connection="c"), 2, 0])
    assert recorder.stats().buffered_bytes == 3 * OBJECT_EVENT_BYTES + STATUS_BYTES + 2 * ITEM_OVERHEAD
    recorder.start()
    assert recorder.stop()
    assert recorder.stats().records == 2


@pytest.mark.parametrize("value", [0, 1_000, (64 << 10) - 1, True, 1.5e6, "64MB", None])
def test_max_buffer_bytes_is_validated(tmp_path: Path, value: Any) -> None:
    with pytest.raises(mrt.ConfigurationError, match=r"max_buffer_bytes=.* must be an int >= 65536"):
        mrt.Recorder(_TapOnly(), tmp_path / "x.mrt", max_buffer_bytes=value)
