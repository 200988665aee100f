"""WebSocket framing with no I/O (RFC 6455 §5): an incremental parser of the frames a server
sends, and the encoding of server frames (for the mock server and the relay).

The connection's reader thread feeds it whatever ``recv`` returned (typically many frames at
once) and takes complete messages out. Parsing frames here instead of through
websocket-client's per-frame ``recv`` avoids two to three small reads and a UTF-8 check in
pure Python per frame, which is where most of a Python client's time goes at batch size 1.
websocket-client still does the opening handshake and frames what we send.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONT",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "SEND_CHUNK",
    "FrameParser",
    "FrameTooLargeError",
    "ProtocolViolationError",
    "encode_frame",
    "join_frames",
    "parse_close_payload",
]

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
_DATA_OPCODES = (OP_TEXT, OP_BINARY)
_CONTROL_OPCODES = (OP_CLOSE, OP_PING, OP_PONG)
_COMPACT_AT = 1 << 20


#: Bytes per ``sendall()`` of :func:`join_frames`: big enough to amortise, small enough to let
#: control frames (pongs) through between buffers.
SEND_CHUNK = 1 << 20


def encode_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """Encode one unmasked, unfragmented frame, as a server sends it (RFC 6455 §5.2)."""
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, n) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, n) + payload


def join_frames(frames: Iterable[bytes], limit: int = SEND_CHUNK) -> list[bytes]:
    """Join encoded frames into buffers of about ``limit`` bytes, split only at frame boundaries."""
    out: list[bytes] = []
    pending: list[bytes] = []
    size = 0
    for frame in frames:
        pending.append(frame)
        size += len(frame)
        if size >= limit:
            out.append(b"".join(pending))
            pending, size = [], 0
    if pending:
        out.append(b"".join(pending))
    return out


class ProtocolViolationError(Exception):
    """The byte stream is not valid WebSocket framing (close with 1002)."""


class FrameTooLargeError(ProtocolViolationError):
    """A message exceeds the configured maximum size (close with 1009)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes exceeds max_message_size={limit}")
        self.size = size
        self.limit = limit


def _unmask(payload: bytes, key: bytes) -> bytes:
    if not payload:
        return payload
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(payload), "big")


def parse_close_payload(payload: bytes) -> tuple[int | None, str]:
    """Return ``(code, reason)`` of a close frame's payload (``(None, "")`` when empty)."""
    if len(payload) < 2:
        return None, ""
    return int.from_bytes(payload[:2], "big"), payload[2:].decode("utf-8", "replace")


class FrameParser:
    """Turns received bytes into ``(opcode, payload)`` messages.

    Data messages (text or binary) are reassembled from fragments; control frames (close,
    ping, pong) are yielded as they come, even between fragments. Payloads are ``bytes``.

    Args:
        max_message_size: largest data message accepted; a larger one raises
            :class:`FrameTooLargeError` as soon as its header announces it.
    """

    __slots__ = ("_buf", "_fragment_opcode", "_fragments", "_fragments_size", "_pos", "max_message_size")

    def __init__(self, max_message_size: int = 16 * 1024 * 1024) -> None:
        self.max_message_size = max_message_size
        self._buf = bytearray()
        self._pos = 0
        self._fragment_opcode: int | None = None
        self._fragments: list[bytes] = []
        self._fragments_size = 0

    @property
    def buffered(self) -> int:
        """Bytes received but not yet parsed into a complete frame."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        if self._pos >= _COMPACT_AT or self._pos == len(self._buf):
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def messages(self) -> Iterator[tuple[int, bytes]]:
        """Yield every complete message in the buffer, in order.

        Raises:
            FrameTooLargeError: a data message exceeds ``max_message_size``.
            ProtocolViolationError: reserved bits, unknown opcodes, bad fragmentation or an
                oversized control frame.
        """
        buf = self._buf
        limit = self.max_message_size
        while True:
            pos = self._pos
            available = len(buf) - pos
            if available < 2:
                return
            b0 = buf[pos]
            b1 = buf[pos + 1]
            length = b1 & 0x7F
            header = 2
            if length == 126:
                if available < 4:
                    return
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                header = 4
            elif length == 127:
                if available < 10:
                    return
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                header = 10
            masked = b1 & 0x80
            if masked:
                header += 4
            opcode = b0 & 0x0F
            if b0 & 0x70:
                raise ProtocolViolationError("reserved bits set (no extension was negotiated)")
            if opcode in _CONTROL_OPCODES:
                if length > 125 or not b0 & 0x80:
                    raise ProtocolViolationError("control frame longer than 125 bytes or fragmented")
            elif opcode not in _DATA_OPCODES and opcode != OP_CONT:
                raise ProtocolViolationError(f"unknown opcode {opcode:#x}")
            elif length + self._fragments_size > limit:
                raise FrameTooLargeError(length + self._fragments_size, limit)
            end = pos + header + length
            if end > len(buf):
                return
            payload = bytes(buf[pos + header : end])
            if masked:
                payload = _unmask(payload, bytes(buf[pos + header - 4 : pos + header]))
            self._pos = end
            if b0 & 0x80 and opcode != OP_CONT:
                if self._fragment_opcode is not None and opcode in _DATA_OPCODES:
                    raise ProtocolViolationError("new data frame before the previous message ended")
                yield opcode, payload
                continue
            if opcode == OP_CONT:
                if self._fragment_opcode is None:
                    raise ProtocolViolationError("continuation frame without a message to continue")
            elif self._fragment_opcode is not None:
                raise ProtocolViolationError("new data frame before the previous message ended")
            else:
                self._fragment_opcode = opcode
            self._fragments.append(payload)
            self._fragments_size += len(payload)
            if b0 & 0x80:
                message_opcode = self._fragment_opcode
                message = b"".join(self._fragments)
                self._fragment_opcode = None
                self._fragments = []
                self._fragments_size = 0
                yield message_opcode, message
