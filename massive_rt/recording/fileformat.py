"""The recording file format (version 1): a writer and a reader, pure (no threads).

Layout (all integers little-endian; docs/recording.md is the specification)::

    file    = preamble header-json header-crc block* [trailer]
    preamble= "MRTREC\\r\\n" u16 version u8 codec u8 0 u32 header_len
    block   = "MB" u32 stored_len u32 raw_len u32 records u32 data_crc u32 head_crc  stored-bytes
    trailer = "ME" u64 records u32 crc
    record  = u64 received_at_ns u16 connection u8 kind u32 payload_len payload   (inside a block)

Each block is compressed on its own (one zstd frame or one gzip member), so a reader never needs
what came before a block to decode it, and a writer's unit of durability is one block. A file cut
anywhere replays every whole block, then whatever whole records the cut block's prefix still
decompresses to; the trailer (written by a clean close) tells a finished file from a cut one.
The reader streams (one block in memory at a time), so replaying or inspecting a file takes memory
bounded by the block size, not the file size.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

import attrs

from ..errors import MassiveRTError
from ..speedups import pack_records_native

zstandard: Any
try:  # the optional extra ``record``
    import zstandard
except ImportError:  # pragma: no cover - exercised by the base-install test
    zstandard = None

__all__ = [
    "CODECS",
    "FORMAT_VERSION",
    "KIND_CONNECTION",
    "KIND_DATA",
    "KIND_DROPPED",
    "KIND_OBJECTS",
    "KIND_STATUS",
    "CorruptRecordingError",
    "Record",
    "RecordingEnd",
    "RecordingError",
    "RecordingHeader",
    "RecordingReader",
    "RecordingWriter",
    "default_codec",
    "pack_records",
    "pack_records_python",
]

FORMAT_VERSION = 1
MAGIC = b"MRTREC\r\n"
_PREAMBLE = struct.Struct("<8sHBBI")
_BLOCK = struct.Struct("<2sIIII")  # magic, stored_len, raw_len, records, data_crc (then u32 head_crc)
_U32 = struct.Struct("<I")
_TRAILER = struct.Struct("<2sQ")
_RECORD = struct.Struct("<QHBI")
_BLOCK_MAGIC = b"MB"
_TRAILER_MAGIC = b"ME"
_BLOCK_HEAD = _BLOCK.size + 4
_TRAILER_SIZE = _TRAILER.size + 4

#: A data frame's bytes exactly as received.
KIND_DATA = 0
#: A status (a ``StatusMessage`` as JSON; see :mod:`massive_rt.recording.statuses`).
KIND_STATUS = 1
#: Objects a producer had already parsed (the synthetic source, frames holding statuses), as a JSON array.
KIND_OBJECTS = 2
#: Events the overflow policy discarded at this point: the count, in ASCII digits.
KIND_DROPPED = 3
#: Declares a connection id: the payload is ``{"name": ..., "market": ...}`` as JSON.
KIND_CONNECTION = 15
_KINDS = frozenset((KIND_DATA, KIND_STATUS, KIND_OBJECTS, KIND_DROPPED, KIND_CONNECTION))

#: Codec names and their byte in the preamble.
CODECS = {"none": 0, "gzip": 1, "zstd": 2}
_CODEC_NAMES = {v: k for k, v in CODECS.items()}
_MAX_BLOCK = 64 << 20  # a length field above this is corruption, not a block


class RecordingError(MassiveRTError):
    """A file is not a recording this version can read (wrong magic, newer format, missing codec)."""


class CorruptRecordingError(RecordingError):
    """A recording's bytes fail their checksum or framing. ``offset`` is the byte where the bad
    block (or header) starts; ``path`` the file; ``reason`` what is wrong there (the message
    without the path and offset)."""

    def __init__(self, message: str, *, offset: int, path: str) -> None:
        super().__init__(f"{path}: corrupt at byte {offset}: {message}")
        self.offset = offset
        self.path = path
        self.reason = message


def default_codec() -> str:
    """``"zstd"`` when the ``record`` extra (zstandard) is installed, else ``"gzip"``."""
    return "zstd" if zstandard is not None else "gzip"


@attrs.frozen(kw_only=True)
class RecordingHeader:
    """What a recording says about itself (never the API key).

    Attributes:
        format_version: the file format's version.
        massive_rt_version: the library version that wrote it.
        codec: ``zstd``, ``gzip`` or ``none``.
        started_at_ns: wall-clock ns when the file was opened.
        markets: markets of the connections recorded.
        connections: names of the connections known when the file was opened.
        subscriptions: channels subscribed when the file was opened.
        part: 0 for the first file of a recording, then 1, 2 ... across rotations.
    """

    format_version: int = FORMAT_VERSION
    massive_rt_version: str = ""
    codec: str = "none"
    started_at_ns: int = 0
    markets: tuple[str, ...] = ()
    connections: tuple[str, ...] = ()
    subscriptions: tuple[str, ...] = ()
    part: int = 0

    def to_json(self) -> bytes:
        """The header as written in the file."""
        return json.dumps(attrs.asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> RecordingHeader:
        """Parse a header written by :meth:`to_json` (unknown keys are ignored: later minor additions)."""
        raw: dict[str, Any] = json.loads(data)
        known = {f.name for f in attrs.fields(cls)}
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in known}
        return cls(**values)


class Record(NamedTuple):
    """One record: when it was received, on which connection, what kind, its bytes."""

    received_at_ns: int
    connection: str
    kind: int
    payload: bytes


@attrs.frozen(kw_only=True)
class RecordingEnd:
    """Where reading stopped.

    Attributes:
        complete: True when the file ends with the trailer a clean close writes.
        offset: the byte after the last whole block read (the file's size when complete).
        size: the file's size.
        records: records read.
        reason: why reading stopped (``"complete"`` or what was cut).
    """

    complete: bool
    offset: int
    size: int
    records: int
    reason: str


class _Compressor:
    def __init__(self, codec: str, level: int | None) -> None:
        self.codec = codec
        self._zstd = None
        self._level = level
        if codec == "zstd":
            if zstandard is None:
                raise RecordingError("codec 'zstd' needs zstandard: pip install 'massive-rt[record]'")
            self._zstd = zstandard.ZstdCompressor(level=1 if level is None else level)

    def compress(self, raw: bytearray) -> bytes:
        if self._zstd is not None:
            return bytes(self._zstd.compress(raw))
        if self.codec == "gzip":
            packer = zlib.compressobj(1 if self._level is None else self._level, zlib.DEFLATED, 31)
            return packer.compress(raw) + packer.flush()
        return bytes(raw)


def _decompressor(codec: str) -> Any:
    """A streaming decompressor with ``decompress(data) -> bytes`` (partial input gives a prefix)."""
    if codec == "zstd":
        if zstandard is None:
            raise RecordingError("this recording is zstd-compressed: pip install 'massive-rt[record]' to read it")
        return zstandard.ZstdDecompressor().decompressobj()
    if codec == "gzip":
        return zlib.decompressobj(31)
    return None


def pack_records_python(
    out: bytearray, received_at_ns: int, connection: int, kind: int, payloads: bytes | list[bytes]
) -> int:
    """The pure-Python :data:`pack_records`: the same bytes, the same errors, nothing appended on one."""
    if payloads.__class__ is bytes:
        payloads = [payloads]
    elif payloads.__class__ is not list:
        raise TypeError("pack_records() takes a bytes object or a list of them")
    if out.__class__ is not bytearray:
        raise TypeError("pack_records() appends to a bytearray")
    if not (isinstance(received_at_ns, int) and isinstance(connection, int) and isinstance(kind, int)):
        raise TypeError("pack_records(): received_at_ns, connection and kind must be integers")
    if not 0 <= connection <= 0xFFFF or not 0 <= kind <= 0xFF:
        raise OverflowError("pack_records(): connection must fit 16 bits, kind 8")
    parts: list[bytes] = []
    pack = _RECORD.pack
    for index, payload in enumerate(payloads):
        if payload.__class__ is not bytes:
            raise TypeError(f"pack_records(): payload {index} is {type(payload).__name__}, not bytes")
        try:
            parts.append(pack(received_at_ns, connection, kind, len(payload)))
        except struct.error as exc:  # a receive time or a length out of range, as the compiled packer says it
            raise OverflowError(f"pack_records(): {exc}") from None
        parts.append(payload)
    packed = b"".join(parts)
    out += packed
    return len(packed)


#: ``pack_records(out, received_at_ns, connection, kind, payloads) -> int``: appends one record per
#: payload (one ``bytes`` or a list of them) to the bytearray ``out`` and returns the bytes added.
#: Compiled when the accelerator is built (:data:`massive_rt.speedups.pack_records_native`): a
#: read's frames in one call, where the Python packer takes two steps per frame.
pack_records: Callable[[bytearray, int, int, int, bytes | list[bytes]], int] = (
    pack_records_native if pack_records_native is not None else pack_records_python
)


class RecordingWriter:
    """Appends records to a new recording file; not thread-safe (one writer thread).

    Records are buffered into a block, written (compressed) by :meth:`flush` or once the block
    holds ``block_bytes``; :meth:`close` writes the last block and the trailer.

    Args:
        target: a path (created; an existing file is refused) or a binary file object.
        header: what the file says about itself.
        block_bytes: raw bytes per block before it is written.
        level: the codec's compression level (None: zstd 1, gzip 1).
    """

    def __init__(
        self, target: str | Path | IO[bytes], header: RecordingHeader, *, block_bytes: int = 256 << 10,
        level: int | None = None,
    ) -> None:  # fmt: skip
        if header.codec not in CODECS:
            raise RecordingError(f"codec={header.codec!r}: one of {', '.join(CODECS)}")
        self._compressor = _Compressor(header.codec, level)
        if isinstance(target, (str, Path)):
            self.path = str(target)
            self._file: IO[bytes] = open(target, "xb")  # noqa: SIM115 - closed by close()
        else:
            self.path = getattr(target, "name", "<stream>")
            self._file = target
        self.header = header
        self._block_bytes = block_bytes
        # The records of the block being filled, packed as they come (a read's frames in one
        # pack_records call) and compressed straight from this buffer when the block is written.
        self._block = bytearray()
        self._pack = pack_records
        self._block_records = 0
        self._connections: dict[str, int] = {}
        self.records = 0  # data, status and drop records (connection declarations not counted)
        self.raw_bytes = 0  # record bytes before compression
        self.bytes_written = 0
        self.closed = False
        head = header.to_json()
        preamble = _PREAMBLE.pack(MAGIC, FORMAT_VERSION, CODECS[header.codec], 0, len(head))
        self._write(preamble + head + _U32.pack(zlib.crc32(head)))

    def append(self, received_at_ns: int, connection: str, kind: int, payload: bytes, market: str = "") -> bool:
        """Buffer one record (``connection`` declared in the file the first time it appears).

        Returns True when the append wrote a block (the buffer reached ``block_bytes``)."""
        conn_id = self._connections.get(connection)
        if conn_id is None:
            conn_id = self._declare(received_at_ns, connection, market)
        if payload.__class__ is not bytes:
            payload = bytes(payload)
        self._pack(self._block, received_at_ns, conn_id, kind, payload)
        self._block_records += 1
        self.records += 1
        if len(self._block) >= self._block_bytes:
            self.flush()
            return True
        return False

    def append_many(
        self, received_at_ns: int, connection: str, kind: int, payloads: list[bytes], market: str = ""
    ) -> bool:
        """Buffer one record per payload, all with the same receive time, connection and kind
        (a read's frames): the same records as that many :meth:`append` calls, in one step.

        Returns True when a block was written."""
        conn_id = self._connections.get(connection)
        if conn_id is None:
            conn_id = self._declare(received_at_ns, connection, market)
        if payloads.__class__ is not list:
            payloads = list(payloads)
        self._pack(self._block, received_at_ns, conn_id, kind, payloads)
        self._block_records += len(payloads)
        self.records += len(payloads)
        if len(self._block) >= self._block_bytes:
            self.flush()
            return True
        return False

    def _declare(self, received_at_ns: int, connection: str, market: str) -> int:
        conn_id = len(self._connections)
        declaration = json.dumps({"name": connection, "market": market}).encode()
        self._pack(self._block, received_at_ns, conn_id, KIND_CONNECTION, declaration)
        self._connections[connection] = conn_id
        self._block_records += 1
        return conn_id

    def flush(self) -> None:
        """Write the records buffered so far as one block, and flush the file."""
        block = self._block
        if block:
            stored = self._compressor.compress(block)
            head = _BLOCK.pack(_BLOCK_MAGIC, len(stored), len(block), self._block_records, zlib.crc32(stored))
            self._write(head + _U32.pack(zlib.crc32(head)) + stored)
            self.raw_bytes += len(block)
            self._block = bytearray()
            self._block_records = 0
        self._file.flush()

    def close(self) -> None:
        """Write what is buffered and the trailer, and close the file. Idempotent."""
        if self.closed:
            return
        self.flush()
        trailer = _TRAILER.pack(_TRAILER_MAGIC, self.records)
        self._write(trailer + _U32.pack(zlib.crc32(trailer)))
        self._file.flush()
        self._file.close()
        self.closed = True

    @property
    def pending_bytes(self) -> int:
        """Raw bytes buffered and not yet written."""
        return len(self._block)

    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self.bytes_written += len(data)


class RecordingReader:
    """Reads a recording: ``header`` at once, records by iterating, then ``end`` says where it stopped.

    Reading streams: each iteration opens the file and reads one block at a time (a block holds
    ``block_bytes`` of records, 256 KiB by default), so memory stays bounded by the block size
    however large the file. The file's size is taken when iteration starts (bytes appended after
    that are not read).

    A cut file (no trailer) is not an error: iteration yields every record that is whole and ends;
    ``end`` reports the offset. Bytes that fail a checksum raise :class:`CorruptRecordingError`
    naming the offset; nothing is skipped.

    Raises (at construction):
        RecordingError: not a recording, a newer format, or a codec that is not installed.
        CorruptRecordingError: the header fails its checksum.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        with open(path, "rb") as f:
            preamble = f.read(_PREAMBLE.size)
            if len(preamble) < _PREAMBLE.size or not preamble.startswith(MAGIC):
                raise RecordingError(f"{self.path}: not a massive_rt recording (no {MAGIC!r} at byte 0)")
            _, version, codec, _, head_len = _PREAMBLE.unpack(preamble)
            if version > FORMAT_VERSION:
                raise RecordingError(f"{self.path}: format version {version}; this massive_rt reads up to "
                                     f"{FORMAT_VERSION}")  # fmt: skip
            if codec not in _CODEC_NAMES:
                raise CorruptRecordingError(f"unknown codec byte {codec}", offset=10, path=self.path)
            start = _PREAMBLE.size
            if head_len > _MAX_BLOCK:
                raise CorruptRecordingError(f"header of {head_len} bytes is too large", offset=start, path=self.path)
            head_and_crc = f.read(head_len + 4)
        if len(head_and_crc) < head_len + 4:
            raise CorruptRecordingError("file cut inside the header", offset=start, path=self.path)
        head = head_and_crc[:head_len]
        (crc,) = _U32.unpack_from(head_and_crc, head_len)
        if zlib.crc32(head) != crc:
            raise CorruptRecordingError("header checksum mismatch", offset=start, path=self.path)
        try:
            self.header = RecordingHeader.from_json(head)
        except (ValueError, TypeError) as exc:
            raise CorruptRecordingError(f"unreadable header ({exc})", offset=start, path=self.path) from None
        self.codec = _CODEC_NAMES[codec]
        _decompressor(self.codec)  # fail now, not at the first block, when the codec is missing
        self._first_block = start + head_len + 4
        self.end: RecordingEnd | None = None
        #: ``{connection name: market}`` as declared so far.
        self.markets: dict[str, str] = {}

    def __iter__(self) -> Iterator[Record]:
        return self.records()

    def records(self) -> Iterator[Record]:
        """Yield every whole record in file order, reading one block at a time; set ``end`` when done."""
        with open(self.path, "rb") as f:
            yield from self._read(f, os.fstat(f.fileno()).st_size)

    def _read(self, f: IO[bytes], size: int) -> Iterator[Record]:
        path = self.path
        offset = self._first_block
        f.seek(offset)
        names: dict[int, str] = {}
        count = 0
        while True:
            if offset == size:
                self.end = RecordingEnd(complete=False, offset=offset, size=size, records=count,
                                        reason="no end marker: the writer did not close the file")  # fmt: skip
                return
            head = f.read(min(_BLOCK_HEAD, size - offset))  # a block header, or the (shorter) end marker
            magic = head[:2]
            if magic == _TRAILER_MAGIC or (len(magic) < 2 and magic == _TRAILER_MAGIC[: len(magic)] and magic):
                if size - offset < _TRAILER_SIZE:
                    self.end = RecordingEnd(complete=False, offset=offset, size=size, records=count,
                                            reason="cut inside the end marker")  # fmt: skip
                    return
                trailer = head[: _TRAILER.size]
                (crc,) = _U32.unpack_from(head, _TRAILER.size)
                if zlib.crc32(trailer) != crc:
                    raise CorruptRecordingError("end marker checksum mismatch", offset=offset, path=path)
                _, total = _TRAILER.unpack(trailer)
                if total != count:
                    raise CorruptRecordingError(f"end marker counts {total} records, the blocks hold {count}",
                                                offset=offset, path=path)  # fmt: skip
                if offset + _TRAILER_SIZE != size:
                    raise CorruptRecordingError("bytes after the end marker", offset=offset + _TRAILER_SIZE, path=path)
                self.end = RecordingEnd(complete=True, offset=size, size=size, records=count, reason="complete")
                return
            if magic != _BLOCK_MAGIC[: len(magic)]:
                raise CorruptRecordingError(f"expected a block, found {magic!r}", offset=offset, path=path)
            if len(head) < _BLOCK_HEAD:
                self.end = RecordingEnd(complete=False, offset=offset, size=size, records=count,
                                        reason="cut inside a block header")  # fmt: skip
                return
            (head_crc,) = _U32.unpack_from(head, _BLOCK.size)
            if zlib.crc32(head[: _BLOCK.size]) != head_crc:
                raise CorruptRecordingError("block header checksum mismatch", offset=offset, path=path)
            _, stored_len, raw_len, _records, data_crc = _BLOCK.unpack_from(head)  # records: for inspection tools
            if stored_len > _MAX_BLOCK or raw_len > _MAX_BLOCK:
                raise CorruptRecordingError(f"block of {stored_len} bytes is too large", offset=offset, path=path)
            body_at = offset + _BLOCK_HEAD
            stored = f.read(min(stored_len, size - body_at))
            if len(stored) < stored_len:  # the cut block: whatever whole records its prefix holds
                for record in self._partial(stored, names):
                    count += 1
                    yield record
                self.end = RecordingEnd(complete=False, offset=offset, size=size, records=count,
                                        reason=f"cut inside the block at byte {offset} "
                                               f"({len(stored)} of its {stored_len} bytes)")  # fmt: skip
                return
            if zlib.crc32(stored) != data_crc:
                raise CorruptRecordingError("block checksum mismatch", offset=offset, path=path)
            raw = self._inflate(stored, offset)
            del stored
            if len(raw) != raw_len:
                raise CorruptRecordingError(f"block inflates to {len(raw)} bytes, not {raw_len}", offset=offset,
                                            path=path)  # fmt: skip
            for record in self._parse(raw, names, offset, strict=True):
                count += 1
                yield record
            offset = body_at + stored_len

    def _inflate(self, stored: bytes, offset: int) -> bytes:
        decompressor = _decompressor(self.codec)
        if decompressor is None:
            return stored
        try:
            return bytes(decompressor.decompress(stored))
        except Exception as exc:  # zlib.error, zstandard.ZstdError
            raise CorruptRecordingError(f"block does not decompress ({exc})", offset=offset, path=self.path) from None

    def _partial(self, stored: bytes, names: dict[int, str]) -> Iterator[Record]:
        decompressor = _decompressor(self.codec)
        if decompressor is None:
            raw = stored
        else:
            try:
                raw = bytes(decompressor.decompress(stored))
            except Exception:  # a cut compressed stream may end mid-symbol: nothing whole in it
                return
        yield from self._parse(raw, names, -1, strict=False)

    def _parse(self, raw: bytes, names: dict[int, str], block_offset: int, *, strict: bool) -> Iterator[Record]:
        at, end, unpack, head = 0, len(raw), _RECORD.unpack_from, _RECORD.size
        while at < end:
            if end - at < head:
                if strict:
                    raise CorruptRecordingError("block ends inside a record", offset=block_offset, path=self.path)
                return
            received_at_ns, conn_id, kind, length = unpack(raw, at)
            at += head
            if at + length > end:
                if strict:
                    raise CorruptRecordingError("block ends inside a record", offset=block_offset, path=self.path)
                return
            payload = raw[at : at + length]
            at += length
            if kind == KIND_CONNECTION:
                declared = json.loads(payload)
                names[conn_id] = declared["name"]
                self.markets[declared["name"]] = declared.get("market", "")
                continue
            if kind not in _KINDS or conn_id not in names:
                raise CorruptRecordingError(f"record of unknown kind {kind} or connection {conn_id}",
                                            offset=block_offset, path=self.path)  # fmt: skip
            yield Record(received_at_ns, names[conn_id], kind, payload)
