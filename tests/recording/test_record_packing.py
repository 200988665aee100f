"""Record packing: the compiled ``pack_records`` and the pure-Python one write the same bytes.

The recording writer packs records straight into its block buffer with ``pack_records``: compiled
when the accelerator is built (``massive_rt.speedups.pack_records_native``), else in Python. Both
must give the bytes of the format (``u64 received_at_ns u16 connection u8 kind u32 length payload``,
docs/recording.md), the same return value, the same error types, and append nothing on an error;
a file written through either is the same file, byte for byte.
"""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import massive_rt as mrt
from massive_rt import speedups
from massive_rt.eventqueue import KIND_DATA as ITEM_DATA
from massive_rt.eventqueue import KIND_EVENT as QUEUED_EVENT
from massive_rt.eventqueue import KIND_FRAMES as ITEM_FRAMES
from massive_rt.recording import RecordingHeader, RecordingReader, RecordingWriter, fileformat
from massive_rt.recording.fileformat import KIND_DATA, KIND_STATUS, pack_records_python
from tests.support import property_examples

pytestmark = pytest.mark.timeout(120)

native = speedups.pack_records_native
PACKERS = [pytest.param(pack_records_python, id="python")] + (
    [pytest.param(native, id="compiled")] if native is not None else []
)
needs_native = pytest.mark.skipif(native is None, reason=f"the accelerator is {speedups.STATUS}")


def reference(received_at_ns: int, connection: int, kind: int, payloads: list[bytes]) -> bytes:
    """The records as the format specifies them, one struct.pack per record."""
    return b"".join(struct.pack("<QHBI", received_at_ns, connection, kind, len(p)) + p for p in payloads)


@pytest.mark.parametrize("pack", PACKERS)
def test_a_list_of_payloads_packs_as_the_format_specifies(pack: Any) -> None:
    out = bytearray(b"earlier records")
    payloads = [b'[{"ev":"T"}]', b"", b"x" * 70_000]
    added = pack(out, 1_700_000_000_123_456_789, 3, KIND_DATA, payloads)
    assert bytes(out) == b"earlier records" + reference(1_700_000_000_123_456_789, 3, KIND_DATA, payloads)
    assert added == len(out) - len(b"earlier records") == 3 * 15 + 12 + 70_000


@pytest.mark.parametrize("pack", PACKERS)
def test_one_bytes_payload_is_one_record(pack: Any) -> None:
    out = bytearray()
    assert pack(out, 2**64 - 1, 0xFFFF, 0xFF, b"status") == 15 + 6
    assert bytes(out) == reference(2**64 - 1, 0xFFFF, 0xFF, [b"status"])


@pytest.mark.parametrize("pack", PACKERS)
@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((-1, 0, 0, [b"a"]), OverflowError),  # a receive time below zero
        ((2**64, 0, 0, [b"a"]), OverflowError),  # ... or beyond 64 bits
        ((0, 0x10000, 0, [b"a"]), OverflowError),  # a connection id beyond 16 bits
        ((0, 0, 0x100, [b"a"]), OverflowError),  # a kind beyond 8 bits
        ((1.5, 0, 0, [b"a"]), TypeError),  # a receive time that is not an integer
        ((0, "1", 0, [b"a"]), TypeError),
        ((0, 0, 0, [b"a", "text"]), TypeError),  # a payload that is not bytes (the last one)
        ((0, 0, 0, [b"a", bytearray(b"b")]), TypeError),
        ((0, 0, 0, (b"a", b"b")), TypeError),  # a tuple, not a list
        ((0, 0, 0, "text"), TypeError),
    ],
    ids=["negative-time", "time-beyond-64-bits", "connection-beyond-16-bits", "kind-beyond-8-bits",
         "float-time", "str-connection", "str-payload", "bytearray-payload", "tuple", "str"],
)  # fmt: skip
def test_bad_input_raises_the_same_error_and_appends_nothing(pack: Any, args: tuple[Any, ...], error: type) -> None:
    out = bytearray(b"kept")
    with pytest.raises(error):
        pack(out, *args)
    assert out == bytearray(b"kept")


@pytest.mark.parametrize("pack", PACKERS)
def test_only_a_bytearray_is_appended_to(pack: Any) -> None:
    with pytest.raises(TypeError, match="bytearray"):
        pack(b"immutable", 0, 0, 0, [b"a"])


@needs_native
@settings(max_examples=property_examples(400), deadline=None)
@given(
    prefix=st.binary(max_size=64),
    received_at_ns=st.integers(min_value=0, max_value=2**64 - 1),
    connection=st.integers(min_value=0, max_value=0xFFFF),
    kind=st.integers(min_value=0, max_value=0xFF),
    payloads=st.one_of(st.binary(max_size=300), st.lists(st.binary(max_size=300), max_size=20)),
)
def test_compiled_and_python_packers_write_the_same_bytes(
    prefix: bytes, received_at_ns: int, connection: int, kind: int, payloads: bytes | list[bytes]
) -> None:
    compiled, python = bytearray(prefix), bytearray(prefix)
    assert native is not None
    added = native(compiled, received_at_ns, connection, kind, payloads)
    assert added == pack_records_python(python, received_at_ns, connection, kind, payloads)
    assert compiled == python
    as_list = [payloads] if isinstance(payloads, bytes) else payloads
    assert bytes(compiled) == prefix + reference(received_at_ns, connection, kind, as_list)


def _write(path: Path, codec: str) -> None:
    writer = RecordingWriter(path, RecordingHeader(codec=codec, started_at_ns=1, markets=("stocks",)), block_bytes=4096)
    for i in range(200):
        read = [b'[{"ev":"T","sym":"S%d","p":%d.5}]' % (i % 7, j) for j in range(i % 5)]
        writer.append_many(1_000 + i, f"c{i % 3}", KIND_DATA, read, "stocks")
        writer.append(1_000 + i, "c0", KIND_STATUS, b'{"status":"x"}', "stocks")
    writer.close()


@needs_native
@pytest.mark.parametrize("codec", fileformat.CODECS)
def test_a_file_written_with_either_packer_is_the_same_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, codec: str
) -> None:
    assert fileformat.pack_records is native
    _write(tmp_path / "compiled.mrt", codec)
    calls = []

    def python_packer(*args: Any) -> int:
        calls.append(len(args))
        return pack_records_python(*args)

    monkeypatch.setattr(fileformat, "pack_records", python_packer)
    _write(tmp_path / "python.mrt", codec)
    assert calls  # the second file was packed in Python
    assert (tmp_path / "compiled.mrt").read_bytes() == (tmp_path / "python.mrt").read_bytes()
    assert len(list(RecordingReader(tmp_path / "python.mrt"))) == 200 + sum(i % 5 for i in range(200))


def test_frames_received_as_text_are_recorded_as_their_utf8_bytes() -> None:
    """A read whose frames are str (not what the reader queues today, but what the tap allows):
    the packer refuses them, and the writer records each frame's UTF-8 bytes instead."""
    source = mrt.SyntheticSource(("T.*",), rate=None, clock=None)
    frames_as_bytes = [b'[{"ev":"T","sym":"\xc3\xa9"}]', b'[{"ev":"T","sym":"B"}]']
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "text.mrt"
        recorder = mrt.Recorder(source, path).start()
        recorder(source, [ITEM_FRAMES, [f.decode() for f in frames_as_bytes], 10, -1])
        recorder(source, [ITEM_FRAMES, frames_as_bytes, 11, -1])
        recorder(source, [ITEM_DATA, frames_as_bytes[0].decode(), 12, -1])
        assert recorder.stop()
        records = [r for r in RecordingReader(path) if r.kind == KIND_DATA]
        assert recorder.stats().unrecordable == 0
    assert [(r.received_at_ns, r.payload) for r in records] == [
        (10, frames_as_bytes[0]), (10, frames_as_bytes[1]), (11, frames_as_bytes[0]), (11, frames_as_bytes[1]),
        (12, frames_as_bytes[0]),
    ]  # fmt: skip


def test_frames_taken_one_by_one_are_recorded_in_order_around_statuses_and_other_sources() -> None:
    """The writer packs each item's frames in one call: the file holds one record per frame, in
    the order taken, whatever comes between them (a status, another source's frame, text)."""
    first = mrt.SyntheticSource(("T.*",), rate=None, clock=None, name="first")
    second = mrt.SyntheticSource(("T.*",), rate=None, clock=None, name="second")
    frame = [b'[{"ev":"T","q":%d}]' % i for i in range(9)]
    status = mrt.StatusMessage(status="state", message="reconnecting", connection="first")
    taken: list[tuple[Any, list[Any]]] = [
        (first, [ITEM_DATA, frame[0], 10, -1]), (first, [ITEM_DATA, frame[1], 10, -1]),
        (second, [ITEM_DATA, frame[2], 10, -1]),  # another source, same receive time
        (first, [ITEM_DATA, frame[3], 10, -1]),
        (first, [QUEUED_EVENT, status, 10, 0]),  # a status between two frames of one read
        (first, [ITEM_DATA, frame[4], 10, -1]), (first, [ITEM_DATA, frame[5].decode(), 10, -1]),  # text
        (first, [ITEM_DATA, frame[6], 11, -1]),  # the next read
        (first, [ITEM_FRAMES, [frame[7], frame[8]], 11, -1]),
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "runs.mrt"
        recorder = mrt.Recorder(first, path)
        for source, item in taken:  # all buffered before the writer starts: one pass of its loop
            recorder(source, item)
        recorder.start()
        assert recorder.stop()
        records = [(r.received_at_ns, r.connection, r.kind, r.payload) for r in RecordingReader(path)]
    assert [(at, name, kind) for at, name, kind, _ in records] == [
        (10, "first", KIND_DATA), (10, "first", KIND_DATA), (10, "second", KIND_DATA), (10, "first", KIND_DATA),
        (10, "first", KIND_STATUS), (10, "first", KIND_DATA), (10, "first", KIND_DATA), (11, "first", KIND_DATA),
        (11, "first", KIND_DATA), (11, "first", KIND_DATA),
    ]  # fmt: skip
    assert [payload for _, _, kind, payload in records if kind == KIND_DATA] == frame
    assert b"reconnecting" in records[4][3]
