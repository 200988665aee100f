"""Reading a recording streams: memory stays bounded by the block size, not the file's size
(tracemalloc's peak, in bytes, for a file many times larger than the bound), and the crash-safety
contract holds while streaming (a cut file ends at its last whole record with the offset; a flipped
byte is an error naming its block)."""

from __future__ import annotations

import random
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from massive_rt.recording import CorruptRecordingError, RecordingHeader, RecordingReader, RecordingWriter, summarize
from massive_rt.recording.fileformat import KIND_DATA

BLOCK = 64 << 10
BOUND = 1 << 20  # 16 blocks: far more than one block needs, far less than the file
FRAMES = 8_000


def frame(rng: random.Random, i: int) -> bytes:
    """A ~1 KB frame of one trade with an incompressible-ish filler (hex of random bytes)."""
    filler = rng.randbytes(450).hex().encode()
    return b'[{"ev":"T","sym":"S%d","p":1.5,"s":1,"t":%d,"q":%d,"x":"%s"}]' % (i % 50, i, i, filler)


@pytest.fixture(scope="module")
def big_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.mrt"
    rng = random.Random(16)
    writer = RecordingWriter(path, RecordingHeader(codec="gzip", markets=("stocks",)), block_bytes=BLOCK)
    for i in range(FRAMES):
        writer.append(1_000 + i, "c1", KIND_DATA, frame(rng, i), "stocks")
    writer.close()
    assert path.stat().st_size > 4 * BOUND
    return path


def peak_of(run: Callable[[], Any]) -> tuple[int, Any]:
    tracemalloc.start()
    try:
        result = run()
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


@pytest.mark.timeout(120)
def test_reading_a_large_recording_takes_memory_bounded_by_the_block_not_the_file(big_recording: Path) -> None:
    readers: list[RecordingReader] = []

    def read_all() -> int:
        readers.append(RecordingReader(big_recording))
        return sum(1 for _ in readers[0])

    peak, count = peak_of(read_all)
    (reader,) = readers
    assert count == FRAMES
    assert reader.end is not None
    assert reader.end.complete
    assert peak < BOUND, f"peak {peak:,} bytes reading a {big_recording.stat().st_size:,}-byte file"


@pytest.mark.timeout(120)
def test_inspecting_a_large_recording_takes_memory_bounded_by_the_block_not_the_file(big_recording: Path) -> None:
    peak, summary = peak_of(lambda: summarize(big_recording))
    assert summary.events == FRAMES
    assert [f.state for f in summary.files] == ["whole"]
    assert peak < BOUND, f"peak {peak:,} bytes inspecting a {big_recording.stat().st_size:,}-byte file"


@pytest.mark.timeout(120)
def test_a_large_recording_cut_mid_block_streams_up_to_its_last_whole_record(
    big_recording: Path, tmp_path: Path
) -> None:
    data = big_recording.read_bytes()
    cut = tmp_path / "cut.mrt"
    cut.write_bytes(data[: len(data) * 2 // 3])
    reader = RecordingReader(cut)
    sequence = [r.received_at_ns for r in reader]
    assert reader.end is not None
    assert not reader.end.complete
    assert 0 < len(sequence) < FRAMES
    assert sequence == list(range(1_000, 1_000 + len(sequence)))  # a prefix, nothing skipped
    assert reader.end.offset < len(data) * 2 // 3 == reader.end.size


@pytest.mark.timeout(120)
def test_a_flipped_byte_deep_in_a_large_recording_names_its_block(big_recording: Path, tmp_path: Path) -> None:
    data = bytearray(big_recording.read_bytes())
    where = len(data) // 2
    data[where] ^= 0xFF
    bad = tmp_path / "bad.mrt"
    bad.write_bytes(bytes(data))
    read: list[int] = []
    with pytest.raises(CorruptRecordingError) as info:
        read.extend(r.received_at_ns for r in RecordingReader(bad))
    assert 0 < info.value.offset <= where
    assert f"corrupt at byte {info.value.offset}" in str(info.value)
    assert read == list(range(1_000, 1_000 + len(read)))  # every block before the bad one, in order
