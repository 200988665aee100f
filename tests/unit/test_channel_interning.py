"""Channel strings are held once: a canonical channel is the caller's own string, interned, and
the acknowledged set shares the desired set's strings instead of keeping the server's copies."""

from __future__ import annotations

import sys
from collections.abc import Callable

from massive_rt.connection import MassiveWebSocketClient
from massive_rt.protocol import parse_channels
from massive_rt.testing import MockMassiveServer

WAIT = 10.0


def fresh(text: str) -> str:
    """An equal string that is a new object (never the interned one)."""
    return "".join(list(text))


def test_a_canonical_channel_is_the_callers_string_interned() -> None:
    mine = fresh("T.INTERNA")
    (parsed,) = parse_channels([mine])
    assert parsed is mine
    assert sys.intern(fresh("T.INTERNA")) is mine


class Name(str):
    """A str subclass (an enum member, a custom type): it is not kept, a plain string is."""


def test_a_channel_of_a_str_subclass_becomes_a_plain_interned_string() -> None:
    (parsed,) = parse_channels([Name("T.INTERNB")])
    assert parsed.__class__ is str
    assert parsed == "T.INTERNB"
    assert sys.intern(fresh("T.INTERNB")) is parsed


def test_equal_channels_from_two_callers_share_one_string() -> None:
    (first,) = parse_channels([fresh("Q.INTERNC")])
    (second,) = parse_channels([fresh("Q.INTERNC")])
    assert first is second


def test_acknowledged_channels_are_the_desired_strings(
    server: MockMassiveServer, make_client: Callable[..., MassiveWebSocketClient]
) -> None:
    channels = [fresh(f"T.INTERND{i}") for i in range(5)]
    client = make_client(subscriptions=channels)
    client.start()
    client.wait_ready(WAIT)
    assert client.wait_acked(channels, WAIT)

    desired = {id(channel) for channel in client._desired}
    acked = {id(channel) for channel in client._acked}
    assert len(acked) == 5
    assert acked <= desired  # no second copy from the server's acknowledgement
    assert {id(channel) for channel in channels} == desired
