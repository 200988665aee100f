"""The recording format on its own (no threads, no server): round trips, cut files, corrupt bytes."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import massive_rt as mrt
from massive_rt.recording import (
    CorruptRecordingError,
    Record,
    RecordingError,
    RecordingHeader,
    RecordingReader,
    RecordingWriter,
    decode_status,
    encode_status,
)
from massive_rt.recording.fileformat import KIND_DATA, KIND_DROPPED, KIND_STATUS

CODECS = ["zstd", "gzip", "none"]


def frame(i: int) -> bytes:
    return b'[{"ev":"T","sym":"S%d","p":%d.25,"s":%d,"t":%d}]' % (i % 7, i, i, 1_700_000_000_000 + i)


def write(path: Path, codec: str, n: int = 600, block_bytes: int = 4096) -> list[Record]:
    header = RecordingHeader(codec=codec, markets=("stocks",), connections=("c1", "c2"), subscriptions=("T.*",))
    writer = RecordingWriter(path, header, block_bytes=block_bytes)
    records = []
    for i in range(n):
        record = Record(1_000 + i, f"c{i % 2 + 1}", KIND_DATA, frame(i))
        writer.append(*record, market="stocks")
        records.append(record)
    writer.close()
    return records


@pytest.mark.parametrize("codec", CODECS)
def test_a_closed_recording_reads_back_every_record_and_says_it_is_complete(tmp_path: Path, codec: str) -> None:
    path = tmp_path / "r.mrt"
    written = write(path, codec)
    reader = RecordingReader(path)

    assert list(reader) == written
    assert reader.header.codec == codec
    assert reader.header.connections == ("c1", "c2")
    assert reader.end is not None
    assert reader.end.complete
    assert reader.end.records == len(written)
    assert reader.markets == {"c1": "stocks", "c2": "stocks"}


@pytest.mark.parametrize("codec", CODECS)
def test_a_file_cut_anywhere_replays_a_prefix_up_to_the_last_whole_record_and_says_where(
    tmp_path: Path, codec: str
) -> None:
    whole = tmp_path / "whole.mrt"
    written = write(whole, codec)
    data = whole.read_bytes()
    rng = random.Random(16)
    cuts = [*sorted(rng.sample(range(200, len(data) - 1), 20)), len(data) - 1]
    block_ends = []
    for cut in cuts:
        path = tmp_path / f"cut{cut}.mrt"
        path.write_bytes(data[:cut])
        reader = RecordingReader(path)
        got = list(reader)

        assert got == written[: len(got)], cut  # a prefix, nothing invented, nothing skipped
        assert reader.end is not None
        assert not reader.end.complete
        assert reader.end.offset <= cut
        assert reader.end.size == cut
        assert reader.end.records == len(got)
        block_ends.append(reader.end.offset)
    # The last byte cut only the end marker: every record is there.
    assert len(list(RecordingReader(tmp_path / f"cut{len(data) - 1}.mrt"))) == len(written)
    assert len(set(block_ends)) > 3  # the cuts fell in different blocks


@pytest.mark.parametrize("codec", CODECS)
def test_a_flipped_byte_is_a_clear_error_naming_the_offset_never_a_skip(tmp_path: Path, codec: str) -> None:
    path = tmp_path / "r.mrt"
    write(path, codec)
    data = bytearray(path.read_bytes())
    rng = random.Random(61)
    for at in rng.sample(range(100, len(data) - 20), 10):
        corrupt = bytearray(data)
        corrupt[at] ^= 0xFF
        bad = tmp_path / f"bad{at}.mrt"
        bad.write_bytes(bytes(corrupt))
        with pytest.raises(CorruptRecordingError) as caught:
            list(RecordingReader(bad))
        assert caught.value.offset <= at
        assert f"corrupt at byte {caught.value.offset}" in str(caught.value)


def test_a_corrupt_header_and_a_foreign_file_are_typed_errors(tmp_path: Path) -> None:
    path = tmp_path / "r.mrt"
    write(path, "none", n=3)
    data = bytearray(path.read_bytes())
    data[30] ^= 0x01
    (tmp_path / "h.mrt").write_bytes(bytes(data))
    (tmp_path / "x.mrt").write_bytes(b"hello world, not a recording")

    with pytest.raises(CorruptRecordingError, match="header checksum"):
        RecordingReader(tmp_path / "h.mrt")
    with pytest.raises(RecordingError, match="not a massive_rt recording"):
        RecordingReader(tmp_path / "x.mrt")


def test_a_newer_format_version_is_refused_with_the_versions(tmp_path: Path) -> None:
    path = tmp_path / "r.mrt"
    write(path, "none", n=1)
    data = bytearray(path.read_bytes())
    data[8] = 9
    path.write_bytes(bytes(data))

    with pytest.raises(RecordingError, match="format version 9; this massive_rt reads up to 1"):
        RecordingReader(path)


def test_a_recording_never_overwrites_a_file(tmp_path: Path) -> None:
    path = tmp_path / "r.mrt"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        RecordingWriter(path, RecordingHeader())
    assert path.read_bytes() == b"precious"


def test_statuses_round_trip_field_for_field_errors_as_type_and_message() -> None:
    error = mrt.SubscriptionError("not entitled to T.X", connection="c1", status="error")
    statuses = [
        mrt.StatusMessage(status="state", state=mrt.ConnectionState.STREAMING, message="ok", connection="c1",
                          received_at_ns=5),
        mrt.StatusMessage(status="gap", gap_start_ns=1, gap_end_ns=2, connection="c2", received_at_ns=7,
                          last_seen=(mrt.SymbolMark(symbol="A", ev="T", timestamp=10, sequence=3, received_at_ns=4),
                                     mrt.SymbolMark(symbol="B", ev="Q", timestamp=9)),
                          last_seen_omitted=2, last_seen_omitted_oldest=1),
        mrt.StatusMessage(status="subscription_error", channels=("T.X",), error=error, connection="c1"),
        mrt.StatusMessage(status="failed", error=OSError("disk"), connection="c1", from_server=True),
    ]  # fmt: skip
    for status in statuses:
        back = decode_status(encode_status(status))
        assert type(back) is mrt.StatusMessage
        for field in ("status", "message", "state", "channels", "dropped", "gap_start_ns", "gap_end_ns",
                      "connection", "received_at_ns", "from_server", "event_type", "last_seen",
                      "last_seen_omitted", "last_seen_omitted_oldest"):  # fmt: skip
            assert getattr(back, field) == getattr(status, field), field
        if status.error is None:
            assert back.error is None
        else:
            assert back.error is not None
            assert getattr(back.error, "type_name", type(back.error).__name__) == type(status.error).__name__
            assert getattr(back.error, "message", None) == getattr(status.error, "message", str(status.error))
    rebuilt = decode_status(encode_status(statuses[2])).error
    assert isinstance(rebuilt, mrt.SubscriptionError)
    assert rebuilt.connection == "c1"
    assert rebuilt.status == "error"


def test_drop_markers_and_statuses_keep_their_place(tmp_path: Path) -> None:
    path = tmp_path / "r.mrt"
    writer = RecordingWriter(path, RecordingHeader(codec="none"))
    writer.append(1, "c", KIND_DATA, frame(1))
    writer.append(2, "c", KIND_DROPPED, b'{"dropped":5,"overflow":"drop_oldest"}')
    writer.append(3, "c", KIND_STATUS, encode_status(mrt.StatusMessage(status="gap", connection="c")))
    writer.append(4, "c", KIND_DATA, frame(2))
    writer.close()

    assert [r.kind for r in RecordingReader(path)] == [KIND_DATA, KIND_DROPPED, KIND_STATUS, KIND_DATA]


@pytest.mark.timeout(30)
@pytest.mark.allow_errors(r"replay crashed", logger="massive_rt.recording.replay")
def test_a_record_whose_content_cannot_be_replayed_fails_the_replay_with_a_status(tmp_path: Path) -> None:
    path = tmp_path / "r.mrt"
    writer = RecordingWriter(path, RecordingHeader(codec="none"))
    writer.append(1, "c", KIND_DATA, frame(1))
    writer.append(2, "c", KIND_DROPPED, b"not json")  # whole and checksummed, but not a drop marker
    writer.append(3, "c", KIND_DATA, frame(2))
    writer.close()
    events: list[mrt.Event] = []

    def take_all(source: mrt.ReplaySource) -> None:
        while True:
            events.append(source.get(timeout=10))

    with mrt.ReplaySource(path, speed=None) as source, pytest.raises(mrt.ClientClosedError):
        take_all(source)
    failed = [e for e in events if isinstance(e, mrt.StatusMessage) and e.status == "failed"]
    assert len(failed) == 1
    assert isinstance(failed[0].error, mrt.RecordingError)
    assert "could not be replayed" in failed[0].message
    assert source.stats().healthy is False


@pytest.mark.parametrize("codec", CODECS)
def test_append_many_writes_the_same_records_as_one_append_per_frame(tmp_path: Path, codec: str) -> None:
    """A read's frames in one call: the same records (a block may end a few frames later)."""
    header = RecordingHeader(codec=codec, markets=("stocks",), connections=("c1",), subscriptions=("T.*",),
                             started_at_ns=1)  # fmt: skip
    frames = [frame(i) for i in range(300)]
    one = RecordingWriter(tmp_path / "one.mrt", header, block_bytes=2048)
    many = RecordingWriter(tmp_path / "many.mrt", header, block_bytes=2048)
    for start in range(0, len(frames), 16):
        read = frames[start : start + 16]
        for payload in read:
            one.append(5_000 + start, "c1", KIND_DATA, payload, "stocks")
        many.append_many(5_000 + start, "c1", KIND_DATA, read, "stocks")
    one.close()
    many.close()
    assert many.records == one.records == 300
    assert many.raw_bytes == one.raw_bytes
    assert list(RecordingReader(tmp_path / "many.mrt")) == list(RecordingReader(tmp_path / "one.mrt"))
    assert [r.payload for r in RecordingReader(tmp_path / "many.mrt")] == frames
