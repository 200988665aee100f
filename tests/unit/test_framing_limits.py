"""FrameParser's default message limit (16 MiB, as ClientConfig's max_message_size) and the
FrameTooLargeError it raises: its message, its numbers, what it is."""

from __future__ import annotations

import pytest

from massive_rt.config import ClientConfig
from massive_rt.framing import OP_BINARY, OP_TEXT, FrameParser, FrameTooLargeError, ProtocolViolationError
from tests.unit.test_framing import drain, frame

MIB = 1024 * 1024


def test_the_default_limit_is_16_mib_as_the_client_default() -> None:
    assert FrameParser().max_message_size == 16 * MIB
    assert ClientConfig().max_message_size == FrameParser().max_message_size


def test_a_message_of_exactly_16_mib_is_accepted_by_default() -> None:
    parser = FrameParser()
    payload = b"x" * (16 * MIB)
    parser.feed(frame(OP_BINARY, payload))
    assert drain(parser) == [(OP_BINARY, payload)]


def test_one_byte_over_16_mib_is_refused_by_default_from_the_header_alone() -> None:
    parser = FrameParser()
    parser.feed(frame(OP_TEXT, b"", length=16 * MIB + 1)[:10])  # the 64-bit length header only
    with pytest.raises(FrameTooLargeError) as info:
        drain(parser)
    assert (info.value.size, info.value.limit) == (16 * MIB + 1, 16 * MIB)


def test_the_error_names_the_size_and_the_limit() -> None:
    error = FrameTooLargeError(2000, 1024)
    assert str(error) == "message of 2000 bytes exceeds max_message_size=1024"
    assert (error.size, error.limit) == (2000, 1024)
    assert isinstance(error, ProtocolViolationError)  # the connection closes with 1009 / 1002 on these


def test_the_raised_error_carries_the_message_so_far_plus_the_new_frame() -> None:
    parser = FrameParser(max_message_size=1024)
    parser.feed(frame(OP_TEXT, b"a" * 1000, fin=False))
    assert drain(parser) == []
    parser.feed(frame(0x0, b"", length=100)[:2])
    with pytest.raises(FrameTooLargeError, match=r"^message of 1100 bytes exceeds max_message_size=1024$"):
        drain(parser)
