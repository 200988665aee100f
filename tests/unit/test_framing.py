"""FrameParser against hand-built server frames (RFC 6455 §5): lengths, masking, fragmentation, errors."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from massive_rt.framing import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameParser,
    FrameTooLargeError,
    ProtocolViolationError,
    parse_close_payload,
)
from tests.support import property_examples

Message = tuple[int, bytes]


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    mask: bytes | None = None,
    rsv: int = 0,
    length: int | None = None,
) -> bytes:
    """Build one WebSocket frame.

    ``length`` overrides the announced payload length (to announce more than is sent); the
    7/16/64-bit length form follows from the announced length, as RFC 6455 requires.
    """
    announced = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if mask is not None else 0
    if announced <= 125:
        header = struct.pack("!BB", b0, mask_bit | announced)
    elif announced <= 0xFFFF:
        header = struct.pack("!BBH", b0, mask_bit | 126, announced)
    else:
        header = struct.pack("!BBQ", b0, mask_bit | 127, announced)
    if mask is None:
        return header + payload
    assert len(mask) == 4
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return header + mask + masked


def fragments(opcode: int, payload: bytes, sizes: list[int], mask: bytes | None = None) -> list[bytes]:
    """Split one data message into frames of the given payload sizes (the last takes the rest)."""
    out: list[bytes] = []
    pos = 0
    for i, size in enumerate([*sizes, len(payload)]):
        last = i == len(sizes)
        part = payload[pos:] if last else payload[pos : pos + size]
        pos += len(part)
        out.append(frame(opcode if i == 0 else OP_CONT, part, fin=last, mask=mask))
        if last:
            break
    return out


def parse(*chunks: bytes, max_message_size: int = 16 * 1024 * 1024) -> list[Message]:
    """Feed ``chunks`` one at a time, draining messages after each; return them all."""
    parser = FrameParser(max_message_size)
    out: list[Message] = []
    for chunk in chunks:
        parser.feed(chunk)
        out.extend(parser.messages())
    return out


def drain(parser: FrameParser) -> list[Message]:
    return list(parser.messages())


# A stream that exercises every feature at once, used for the split tests.
MIXED_MESSAGES: list[Message] = [
    (OP_TEXT, b'[{"ev":"T","sym":"AAPL"}]'),
    (OP_PING, b"are you there"),
    (OP_TEXT, b"x" * 300),  # 16-bit length
    (OP_BINARY, bytes(range(256)) * 2),
    (OP_PONG, b""),
    (OP_TEXT, "Société Générale €".encode()),  # masked, below
    (OP_TEXT, b"fragmented message"),  # fragmented, below
    (OP_TEXT, b""),
    (OP_CLOSE, b"\x03\xe8bye"),
]
MIXED_STREAM = b"".join([
    frame(OP_TEXT, MIXED_MESSAGES[0][1]),
    frame(OP_PING, MIXED_MESSAGES[1][1]),
    frame(OP_TEXT, MIXED_MESSAGES[2][1]),
    frame(OP_BINARY, MIXED_MESSAGES[3][1]),
    frame(OP_PONG),
    frame(OP_TEXT, MIXED_MESSAGES[5][1], mask=b"\x01\x80\xfe\x7f"),
    *fragments(OP_TEXT, MIXED_MESSAGES[6][1], [4, 0, 5]),
    frame(OP_TEXT, b""),
    frame(OP_CLOSE, MIXED_MESSAGES[8][1]),
])  # fmt: skip


# ============================================================================================
# The frame builder itself (so a broken helper cannot hide a parser bug)


def test_frame_builder_matches_rfc6455_examples() -> None:
    # RFC 6455 §5.7: unmasked "Hello", masked "Hello", unmasked ping "Hello", 256-byte and 64 KiB binary headers.
    assert frame(OP_TEXT, b"Hello") == bytes.fromhex("810548656c6c6f")
    assert frame(OP_TEXT, b"Hello", mask=bytes.fromhex("37fa213d")) == bytes.fromhex("818537fa213d7f9f4d5158")
    assert frame(OP_PING, b"Hello") == bytes.fromhex("890548656c6c6f")
    assert frame(OP_BINARY, bytes(256))[:4] == bytes.fromhex("827e0100")
    assert frame(OP_BINARY, bytes(65536))[:10] == bytes.fromhex("827f0000000000010000")


def test_rfc6455_fragmented_hello_example() -> None:
    # RFC 6455 §5.7: "Hel" then "lo" as a fragmented unmasked text message.
    assert parse(bytes.fromhex("010348656c"), bytes.fromhex("80026c6f")) == [(OP_TEXT, b"Hello")]


# ============================================================================================
# Normal operation


def test_many_frames_in_one_feed_come_out_in_order() -> None:
    assert parse(MIXED_STREAM) == MIXED_MESSAGES


def test_nothing_comes_out_of_an_empty_parser() -> None:
    parser = FrameParser()

    assert drain(parser) == []
    assert parser.buffered == 0


@pytest.mark.parametrize(
    ("size", "header_size"),
    [(0, 2), (1, 2), (125, 2), (126, 4), (1000, 4), (65535, 4), (65536, 10), (200_000, 10)],
)
def test_7_16_and_64_bit_lengths(size: int, header_size: int) -> None:
    payload = os.urandom(size)
    data = frame(OP_BINARY, payload)

    assert len(data) == header_size + size
    assert parse(data) == [(OP_BINARY, payload)]


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 125, 126, 70_000])
@pytest.mark.parametrize("key", [b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x12\x34\x56\x78"])
def test_masked_frames_are_unmasked(size: int, key: bytes) -> None:
    payload = os.urandom(size)

    assert parse(frame(OP_TEXT, payload, mask=key)) == [(OP_TEXT, payload)]


def test_masked_control_frame_is_unmasked() -> None:
    assert parse(frame(OP_PING, b"ping!", mask=b"abcd")) == [(OP_PING, b"ping!")]


def test_a_frame_split_at_every_byte_boundary_parses_the_same() -> None:
    for cut in range(len(MIXED_STREAM) + 1):
        assert parse(MIXED_STREAM[:cut], MIXED_STREAM[cut:]) == MIXED_MESSAGES, cut


def test_a_stream_fed_one_byte_at_a_time_parses_the_same() -> None:
    chunks = [MIXED_STREAM[i : i + 1] for i in range(len(MIXED_STREAM))]

    assert parse(*chunks) == MIXED_MESSAGES


@pytest.mark.parametrize("size", [126, 65536])
def test_a_long_header_split_inside_its_length_field_waits_for_the_rest(size: int) -> None:
    data = frame(OP_TEXT, b"a" * size, mask=b"wxyz")

    for cut in (1, 2, 3, 5, 9, 11, 13, len(data) - 1):
        parser = FrameParser()
        parser.feed(data[:cut])
        assert drain(parser) == [], cut
        assert parser.buffered == cut
        parser.feed(data[cut:])
        assert drain(parser) == [(OP_TEXT, b"a" * size)], cut
        assert parser.buffered == 0


def test_buffered_counts_unparsed_bytes() -> None:
    parser = FrameParser()
    data = frame(OP_TEXT, b"hello") + frame(OP_TEXT, b"world")[:3]

    parser.feed(data)
    messages = drain(parser)

    assert messages == [(OP_TEXT, b"hello")]
    assert parser.buffered == 3


def test_fragmented_text_message_with_a_ping_in_between() -> None:
    stream = [
        frame(OP_TEXT, b"Hel", fin=False),
        frame(OP_PING, b"p1"),
        frame(OP_CONT, b"lo ", fin=False),
        frame(OP_PONG, b"p2"),
        frame(OP_CLOSE, b"\x03\xe8", fin=True),
        frame(OP_CONT, b"World", fin=True),
    ]

    assert parse(b"".join(stream)) == [(OP_PING, b"p1"), (OP_PONG, b"p2"), (OP_CLOSE, b"\x03\xe8"),
                                       (OP_TEXT, b"Hello World")]  # fmt: skip


def test_fragmented_binary_message_keeps_its_opcode() -> None:
    payload = os.urandom(1000)

    assert parse(*fragments(OP_BINARY, payload, [1, 200, 0, 500])) == [(OP_BINARY, payload)]


def test_fragmented_masked_message_is_unmasked() -> None:
    payload = b"abcdefghijklmnopqrstuvwxyz" * 10

    assert parse(b"".join(fragments(OP_TEXT, payload, [7, 13, 100], mask=b"\x9a\x01\x00\xff"))) == [(OP_TEXT, payload)]


def test_messages_after_a_fragmented_message_are_unaffected() -> None:
    stream = b"".join([*fragments(OP_TEXT, b"first", [2]), frame(OP_BINARY, b"second"), frame(OP_TEXT, b"third")])

    assert parse(stream) == [(OP_TEXT, b"first"), (OP_BINARY, b"second"), (OP_TEXT, b"third")]


def test_messages_can_be_drained_partially_and_resumed() -> None:
    parser = FrameParser()
    parser.feed(frame(OP_TEXT, b"a") + frame(OP_TEXT, b"b") + frame(OP_TEXT, b"c"))

    first = next(parser.messages())
    rest = drain(parser)

    assert first == (OP_TEXT, b"a")
    assert rest == [(OP_TEXT, b"b"), (OP_TEXT, b"c")]


def test_megabytes_of_small_frames_across_many_feeds() -> None:
    # Crosses the parser's buffer-compaction threshold (1 MiB) several times.
    payloads = [f"msg-{i:06d}".encode() * 5 for i in range(50_000)]
    stream = b"".join(frame(OP_TEXT, p) for p in payloads)
    parser = FrameParser()
    out: list[Message] = []

    for start in range(0, len(stream), 65_537):
        parser.feed(stream[start : start + 65_537])
        out.extend(parser.messages())

    assert len(stream) > 2 * 1024 * 1024
    assert out == [(OP_TEXT, p) for p in payloads]
    assert parser.buffered == 0


def test_payloads_are_bytes_not_views() -> None:
    parser = FrameParser()
    parser.feed(frame(OP_TEXT, b"keep me"))
    ((_, payload),) = drain(parser)

    parser.feed(frame(OP_TEXT, b"overwrite"))
    drain(parser)

    assert type(payload) is bytes
    assert payload == b"keep me"


# ============================================================================================
# Size limits


def test_a_message_of_exactly_the_limit_is_accepted() -> None:
    assert parse(frame(OP_TEXT, b"x" * 1000), max_message_size=1000) == [(OP_TEXT, b"x" * 1000)]


@pytest.mark.parametrize(("announced", "header_size"), [(1001, 4), (70_000, 10), (2**40, 10), (2**63 - 1, 10)])
def test_frame_too_large_is_raised_as_soon_as_the_header_announces_it(announced: int, header_size: int) -> None:
    header = frame(OP_TEXT, b"", length=announced)[:header_size]
    parser = FrameParser(max_message_size=1000)
    parser.feed(header)

    with pytest.raises(FrameTooLargeError) as info:
        drain(parser)

    assert (info.value.size, info.value.limit) == (announced, 1000)
    assert str(announced) in str(info.value)


def test_frame_too_large_with_a_7_bit_length() -> None:
    parser = FrameParser(max_message_size=100)
    parser.feed(frame(OP_BINARY, b"", length=101)[:2])

    with pytest.raises(FrameTooLargeError) as info:
        drain(parser)

    assert info.value.size == 101


def test_frame_too_large_for_a_masked_header_before_its_key_arrives() -> None:
    parser = FrameParser(max_message_size=1000)
    parser.feed(frame(OP_TEXT, b"", length=5000, mask=b"abcd")[:4])

    with pytest.raises(FrameTooLargeError):
        drain(parser)


def test_fragments_whose_total_exceeds_the_limit_raise() -> None:
    parser = FrameParser(max_message_size=10)
    parser.feed(frame(OP_TEXT, b"123456", fin=False))
    assert drain(parser) == []

    parser.feed(frame(OP_CONT, b"", length=5)[:2])  # only the header of the second fragment
    with pytest.raises(FrameTooLargeError) as info:
        drain(parser)

    assert (info.value.size, info.value.limit) == (11, 10)


def test_fragments_whose_total_equals_the_limit_are_accepted() -> None:
    assert parse(*fragments(OP_TEXT, b"0123456789", [3, 3]), max_message_size=10) == [(OP_TEXT, b"0123456789")]


def test_a_control_frame_is_not_limited_by_max_message_size() -> None:
    assert parse(frame(OP_PING, b"p" * 100), max_message_size=10) == [(OP_PING, b"p" * 100)]


def test_frame_too_large_is_a_protocol_violation() -> None:
    assert issubclass(FrameTooLargeError, ProtocolViolationError)


# ============================================================================================
# Protocol violations


@pytest.mark.parametrize(
    ("data", "match"),
    [
        pytest.param(frame(OP_TEXT, b"x", rsv=0b100), "reserved", id="rsv1"),
        pytest.param(frame(OP_TEXT, b"x", rsv=0b010), "reserved", id="rsv2"),
        pytest.param(frame(OP_TEXT, b"x", rsv=0b001), "reserved", id="rsv3"),
        pytest.param(frame(OP_PING, b"x", rsv=0b111), "reserved", id="rsv-on-control"),
        *[pytest.param(frame(op, b"x"), "opcode", id=f"opcode-{op:#x}") for op in (3, 4, 5, 6, 7, 0xB, 0xC, 0xF)],
        pytest.param(frame(OP_CONT, b"x"), "continuation", id="continuation-without-start"),
        pytest.param(frame(OP_CONT, b"x", fin=False), "continuation", id="unfinished-continuation-without-start"),
        pytest.param(frame(OP_TEXT, b"a", fin=False) + frame(OP_TEXT, b"b"), "new data frame", id="text-mid-message"),
        pytest.param(
            frame(OP_TEXT, b"a", fin=False) + frame(OP_BINARY, b"b", fin=False),
            "new data frame",
            id="binary-mid-message",
        ),
        pytest.param(frame(OP_PING, b"p" * 126), "control", id="ping-126-bytes"),
        pytest.param(frame(OP_CLOSE, b"\x03\xe8" + b"r" * 200), "control", id="close-202-bytes"),
        pytest.param(frame(OP_PONG, b"", length=70_000)[:10], "control", id="pong-64-bit-length"),
        pytest.param(frame(OP_PING, b"p", fin=False), "control", id="fragmented-ping"),
        pytest.param(frame(OP_CLOSE, b"\x03\xe8", fin=False), "control", id="fragmented-close"),
    ],
)
def test_protocol_violations_raise(data: bytes, match: str) -> None:
    parser = FrameParser()
    parser.feed(data)

    with pytest.raises(ProtocolViolationError, match=match) as info:
        drain(parser)

    assert not isinstance(info.value, FrameTooLargeError)


def test_a_violation_after_good_frames_comes_after_them() -> None:
    parser = FrameParser()
    parser.feed(frame(OP_TEXT, b"ok") + frame(OP_PING, b"p") + frame(0x3, b"bad"))
    messages = parser.messages()

    assert next(messages) == (OP_TEXT, b"ok")
    assert next(messages) == (OP_PING, b"p")
    with pytest.raises(ProtocolViolationError, match="opcode"):
        next(messages)


# ============================================================================================
# Close payloads


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"", (None, "")),
        (b"\x03", (None, "")),
        (b"\x03\xe8", (1000, "")),
        (b"\x03\xe8bye", (1000, "bye")),
        (b"\x03\xf0Maximum number of websocket connections exceeded.",
         (1008, "Maximum number of websocket connections exceeded.")),
        (b"\x03\xf3\xe2\x82\xac", (1011, "\u20ac")),
        (b"\x0f\xa0\xff\xfe", (4000, "\ufffd\ufffd")),
        (b"\xff\xff", (65535, "")),
    ],
)  # fmt: skip
def test_parse_close_payload(payload: bytes, expected: tuple[int | None, str]) -> None:
    assert parse_close_payload(payload) == expected


def test_close_frame_payload_round_trips_through_the_parser() -> None:
    ((opcode, payload),) = parse(frame(OP_CLOSE, struct.pack("!H", 1001) + b"going away"))

    assert opcode == OP_CLOSE
    assert parse_close_payload(payload) == (1001, "going away")


# ============================================================================================
# Property: any message list, any split points, same messages out

_data_message = st.tuples(
    st.sampled_from([OP_TEXT, OP_BINARY]),
    st.one_of(st.binary(max_size=200), st.binary(min_size=126, max_size=400)),
    st.lists(st.integers(min_value=0, max_value=150), max_size=4),  # fragment sizes
    st.one_of(st.none(), st.binary(min_size=4, max_size=4)),  # mask key
    st.lists(st.tuples(st.sampled_from([OP_PING, OP_PONG]), st.binary(max_size=125)), max_size=2),
)


@settings(max_examples=property_examples(200), deadline=None)
@given(messages=st.lists(_data_message, max_size=8), cuts=st.lists(st.integers(min_value=0), max_size=12))
def test_any_messages_split_anywhere_come_out_unchanged(
    messages: list[tuple[int, bytes, list[int], bytes | None, list[tuple[int, bytes]]]], cuts: list[int]
) -> None:
    stream = b""
    expected: list[Message] = []
    for opcode, payload, sizes, mask, controls in messages:
        parts = fragments(opcode, payload, sizes, mask=mask)
        # Control frames go after the first frame: inside the message when it is fragmented
        # (they come out before it), after it otherwise.
        stream += parts[0]
        if len(parts) == 1:
            expected.append((opcode, payload))
        for control_opcode, control_payload in controls:
            stream += frame(control_opcode, control_payload, mask=mask)
            expected.append((control_opcode, control_payload))
        stream += b"".join(parts[1:])
        if len(parts) > 1:
            expected.append((opcode, payload))
    points = sorted({cut % (len(stream) + 1) for cut in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]

    assert parse(*chunks) == expected
