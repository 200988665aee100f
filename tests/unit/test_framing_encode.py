"""framing: the server side (``encode_frame``, ``join_frames``, ``parse_close_payload``), the exact
errors of FrameParser, the limits at their boundaries, and the parser's buffer compaction."""

from __future__ import annotations

import struct

import pytest

from massive_rt.framing import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    FrameParser,
    FrameTooLargeError,
    ProtocolViolationError,
    encode_frame,
    join_frames,
    parse_close_payload,
)
from tests.unit.test_framing import drain, frame

# ============================================================================================
# encode_frame


@pytest.mark.parametrize(
    ("size", "header"),
    [
        (0, b"\x81\x00"),
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e\x00\x7e"),
        (65535, b"\x81\x7e\xff\xff"),
        (65536, b"\x81\x7f" + struct.pack("!Q", 65536)),
        (70_000, b"\x81\x7f" + struct.pack("!Q", 70_000)),
    ],
)
def test_encode_frame_uses_the_shortest_length_form(size: int, header: bytes) -> None:
    payload = b"x" * size
    assert encode_frame(payload) == header + payload


@pytest.mark.parametrize("size", [5, 300, 70_000])
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY, OP_PING, OP_CLOSE])
def test_encode_frame_sets_fin_and_the_opcode(size: int, opcode: int) -> None:
    encoded = encode_frame(b"y" * size, opcode)
    assert encoded[0] == 0x80 | opcode
    assert encoded[1] & 0x80 == 0  # a server never masks
    parser = FrameParser()
    parser.feed(encoded)
    if opcode in (OP_PING, OP_CLOSE) and size > 125:
        with pytest.raises(ProtocolViolationError):
            drain(parser)
    else:
        assert drain(parser) == [(opcode, b"y" * size)]


# ============================================================================================
# join_frames


def test_join_frames_cuts_a_buffer_as_soon_as_it_reaches_the_limit() -> None:
    frames = [b"a" * 4, b"b" * 6, b"c" * 3, b"d" * 7, b"e"]
    assert join_frames(frames, limit=10) == [b"a" * 4 + b"b" * 6, b"c" * 3 + b"d" * 7, b"e"]


def test_join_frames_splits_only_between_frames() -> None:
    frames = [b"a" * 15, b"b" * 2, b"c" * 9]
    assert join_frames(frames, limit=10) == [b"a" * 15, b"b" * 2 + b"c" * 9]


def test_join_frames_of_nothing_is_nothing() -> None:
    assert join_frames([]) == []
    assert join_frames([b"x"]) == [b"x"]
    assert join_frames(iter([b"ab", b"cd"]), limit=3) == [b"abcd"]


def test_join_frames_keeps_every_byte_in_order() -> None:
    frames = [bytes([i]) * (i % 7 + 1) for i in range(100)]
    buffers = join_frames(frames, limit=16)
    assert b"".join(buffers) == b"".join(frames)
    assert all(len(b) >= 16 for b in buffers[:-1])


# ============================================================================================
# parse_close_payload


def test_parse_close_payload() -> None:
    assert parse_close_payload(b"") == (None, "")
    assert parse_close_payload(b"\x03") == (None, "")
    assert parse_close_payload(b"\x03\xe8") == (1000, "")
    assert parse_close_payload(b"\x03\xf0bye") == (1008, "bye")
    assert parse_close_payload(b"\x0f\xa0caf\xc3\xa9 \xff") == (4000, "caf\u00e9 \ufffd")


# ============================================================================================
# Exact errors


def violation(*frames: bytes) -> str:
    parser = FrameParser()
    for data in frames:
        parser.feed(data)
    with pytest.raises(ProtocolViolationError) as caught:
        drain(parser)
    assert not isinstance(caught.value, FrameTooLargeError)
    return str(caught.value)


def test_each_violation_says_what_it_is() -> None:
    assert violation(frame(OP_TEXT, b"x", rsv=4)) == "reserved bits set (no extension was negotiated)"
    assert violation(frame(OP_PING, b"x" * 126)) == "control frame longer than 125 bytes or fragmented"
    assert violation(frame(OP_PING, b"x", fin=False)) == "control frame longer than 125 bytes or fragmented"
    assert violation(frame(0x3, b"x")) == "unknown opcode 0x3"
    assert violation(frame(OP_CONT, b"x")) == "continuation frame without a message to continue"
    started = frame(OP_TEXT, b"a", fin=False)
    assert violation(started, frame(OP_TEXT, b"b")) == "new data frame before the previous message ended"
    assert violation(started, frame(OP_BINARY, b"b", fin=False)) == "new data frame before the previous message ended"


def test_a_control_frame_of_exactly_125_bytes_is_accepted() -> None:
    parser = FrameParser()
    parser.feed(frame(OP_PING, b"p" * 125))
    assert drain(parser) == [(OP_PING, b"p" * 125)]


# ============================================================================================
# The limit across fragments


def test_every_fragment_so_far_counts_against_the_limit() -> None:
    parser = FrameParser(max_message_size=10)
    parser.feed(frame(OP_TEXT, b"1234", fin=False) + frame(OP_CONT, b"5678", fin=False))
    assert drain(parser) == []
    parser.feed(frame(OP_CONT, b"9ab"))  # 4 + 4 + 3 = 11 > 10, though no fragment is
    with pytest.raises(FrameTooLargeError) as caught:
        drain(parser)
    assert (caught.value.size, caught.value.limit) == (11, 10)


def test_the_next_message_starts_from_nothing_after_a_fragmented_one() -> None:
    parser = FrameParser(max_message_size=10)
    parser.feed(frame(OP_TEXT, b"12345", fin=False) + frame(OP_CONT, b"67890"))
    assert drain(parser) == [(OP_TEXT, b"1234567890")]
    parser.feed(frame(OP_BINARY, b"abcde", fin=False) + frame(OP_CONT, b"fghij"))  # exactly the limit again
    assert drain(parser) == [(OP_BINARY, b"abcdefghij")]
    parser.feed(frame(OP_TEXT, b"0123456789"))
    assert drain(parser) == [(OP_TEXT, b"0123456789")]


# ============================================================================================
# The buffer is compacted: a long stream does not grow it


def test_a_fully_parsed_buffer_is_reset_before_the_next_feed() -> None:
    parser = FrameParser()
    one = frame(OP_TEXT, b"x" * 100)
    for _ in range(1000):
        parser.feed(one)
        assert drain(parser) == [(OP_TEXT, b"x" * 100)]
        assert len(parser._buf) == len(one)  # only what was just fed
    assert parser.buffered == 0


def test_a_partly_parsed_buffer_is_compacted_once_a_mebibyte_was_parsed() -> None:
    parser = FrameParser()
    big = frame(OP_BINARY, b"z" * ((1 << 20) - 10))  # 10-byte header: exactly 1 MiB parsed
    assert len(big) == 1 << 20
    tail = frame(OP_TEXT, b"tail")
    parser.feed(big + tail[:3])
    assert len(drain(parser)) == 1
    assert parser.buffered == 3

    parser.feed(tail[3:])

    assert len(parser._buf) == len(tail)  # the parsed mebibyte is gone
    assert drain(parser) == [(OP_TEXT, b"tail")]


def test_a_partly_parsed_buffer_under_a_mebibyte_is_kept_as_it_is() -> None:
    parser = FrameParser()
    first, second = frame(OP_TEXT, b"a" * 50), frame(OP_TEXT, b"b" * 50)
    parser.feed(first + second[:10])
    assert len(drain(parser)) == 1
    parser.feed(second[10:])
    assert len(parser._buf) == len(first) + len(second)  # no copy for a small parsed prefix
    assert drain(parser) == [(OP_TEXT, b"b" * 50)]
