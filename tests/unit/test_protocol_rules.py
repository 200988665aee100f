"""massive_rt.protocol, pinned exactly: the channel rules' error messages, the wildcard rule
(``wildcard_of``, ``effective_channels``), routing, control frames, status arrays, and the
decoder's defaults (``received_at_ns``, the hook for statuses, the cap on logged unknown codes)."""

from __future__ import annotations

import json
import logging

import pytest

from massive_rt import protocol
from massive_rt.errors import ConfigurationError
from massive_rt.models import StatusMessage, UnknownEvent
from massive_rt.protocol import (
    Decoder,
    build_subscribe,
    build_unsubscribe,
    check_validate_mode,
    effective_channels,
    event_symbol,
    parse_channel,
    parse_channels,
    routes_to,
    status_array,
    wildcard_of,
)

PROTOCOL_LOGGER = "massive_rt.protocol"


@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> set[tuple[str, str]]:
    """``validate_channels='warn'`` warns once per process: start from no warning given."""
    warned: set[tuple[str, str]] = set()
    monkeypatch.setattr(protocol, "_warned_prefixes", warned)
    return warned


# ============================================================================================
# Channel rules


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (5, "channel 5 is not a string"),
        ("", "channel '' is empty"),
        ("T AAPL", "channel 'T AAPL' contains a comma or whitespace; pass channels as separate arguments"),
        ("T.A,T.B", "channel 'T.A,T.B' contains a comma or whitespace; pass channels as separate arguments"),
        ("TAAPL", "channel 'TAAPL' has no '.' between the channel prefix and the ticker (e.g. 'T.AAPL')"),
        (".AAPL", "channel '.AAPL' has an empty channel prefix"),
        ("T.", "channel 'T.' has an empty ticker"),
        ("T.AA*", "channel 'T.AA*' uses '*' inside a ticker; only '<prefix>.*' is a wildcard"),
        (
            "ZZ.A",
            "channel 'ZZ.A' has prefix 'ZZ', which market 'stocks' does not have (known: A, AM, FMV, LULD, LV, "
            "NOI, Q, T; validate_channels='warn' subscribes it anyway)",
        ),
    ],
    ids=repr,
)
def test_each_refused_channel_says_exactly_why(text: object, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_channel(text)
    assert caught.value.message == message
    assert caught.value.field == "channels"


def test_a_wildcard_where_the_market_allows_none_says_so() -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_channel("Q.*", "options")
    assert caught.value.message == "channel 'Q.*' is a wildcard, which options Q does not allow"


@pytest.mark.parametrize("mode", ["strict", "warn", "off"])
def test_check_validate_mode_returns_the_mode(mode: str) -> None:
    assert check_validate_mode(mode) == mode


def test_check_validate_mode_names_the_field_and_the_modes() -> None:
    with pytest.raises(ConfigurationError) as caught:
        check_validate_mode("loose")
    assert caught.value.message == "validate_channels='loose' must be one of 'strict', 'warn', 'off'"
    assert caught.value.field == "validate_channels"
    with pytest.raises(ConfigurationError) as caught:
        check_validate_mode(None, field="mode")
    assert (caught.value.message, caught.value.field) == ("mode=None must be one of 'strict', 'warn', 'off'", "mode")


def test_warn_mode_warns_once_per_market_and_prefix(
    fresh_warnings: set[tuple[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=PROTOCOL_LOGGER)
    assert str(parse_channel("ZZ.A", "stocks", "warn")) == "ZZ.A"
    assert str(parse_channel("ZZ.B", "stocks", "warn")) == "ZZ.B"
    parse_channel("ZZ.A", "crypto", "warn")
    warnings = [r.getMessage() for r in caplog.records if r.name == PROTOCOL_LOGGER]
    assert len(warnings) == 2
    assert warnings[0].startswith("channel prefix 'ZZ' is not one massive_rt knows for stocks")
    assert "for crypto" in warnings[1]
    assert fresh_warnings == {("stocks", "ZZ"), ("crypto", "ZZ")}


def test_off_mode_accepts_an_unknown_prefix_silently(
    fresh_warnings: set[tuple[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=PROTOCOL_LOGGER)
    assert str(parse_channel("ZZ.A", "stocks", "off")) == "ZZ.A"
    assert [r for r in caplog.records if r.name == PROTOCOL_LOGGER] == []
    assert fresh_warnings == set()


def test_parse_channels_applies_the_validate_mode_to_every_channel(fresh_warnings: set[tuple[str, str]]) -> None:
    assert parse_channels(["ZZ.A", "T.A", "ZZ.A"], "stocks", "off") == ("ZZ.A", "T.A")
    with pytest.raises(ConfigurationError):
        parse_channels(["T.A", "ZZ.A"], "stocks")


# ============================================================================================
# The wildcard rule


@pytest.mark.parametrize(
    ("channel", "wildcard"),
    [("T.AAPL", "T.*"), ("T.BRK.B", "T.*"), ("AM.*", "AM.*"), ("XT.BTC-USD", "XT.*"), ("LULD.X.Y.Z", "LULD.*")],
)
def test_wildcard_of_is_the_prefix_before_the_first_dot(channel: str, wildcard: str) -> None:
    assert wildcard_of(channel) == wildcard


def test_effective_channels_leaves_out_the_tickers_a_wildcard_covers() -> None:
    channels = ["T.AAPL", "Q.AAPL", "T.*", "T.BRK.B", "AM.MSFT", "Q.MSFT"]
    assert effective_channels(channels) == ["Q.AAPL", "T.*", "AM.MSFT", "Q.MSFT"]
    assert effective_channels(iter(channels)) == ["Q.AAPL", "T.*", "AM.MSFT", "Q.MSFT"]  # any iterable, once


def test_effective_channels_without_wildcards_is_the_input_in_order() -> None:
    channels = ["T.B", "T.A", "Q.A"]
    assert effective_channels(channels) == channels
    assert effective_channels(dict.fromkeys(channels)) == channels  # the pool passes its dict of channels
    assert effective_channels([]) == []


def test_effective_channels_keeps_every_wildcard() -> None:
    assert effective_channels(["T.*", "Q.*", "T.A", "AM.*"]) == ["T.*", "Q.*", "AM.*"]


@pytest.mark.parametrize(
    ("subscriptions", "ev", "symbol", "routed"),
    [
        ({"T.AAPL"}, "T", "AAPL", True),
        ({"T.*"}, "T", "AAPL", True),
        ({"T.*"}, "T", None, True),
        ({"T.MSFT"}, "T", "AAPL", False),
        ({"Q.AAPL"}, "T", "AAPL", False),
        ({"T.AAPL"}, "T", None, False),
        ({"T.5"}, "T", 5, False),  # not a string symbol: only the wildcard matches
        ({"T.*", "T.AAPL"}, "T", "AAPL", True),
        (set(), "T", "AAPL", False),
        ({"None.*"}, None, "AAPL", False),
        ({"5.*"}, 5, "A", False),
    ],
)
def test_routes_to(subscriptions: set[str], ev: object, symbol: object, routed: bool) -> None:
    assert routes_to(subscriptions, ev, symbol) is routed


# ============================================================================================
# Control frames and status arrays


def test_subscribe_frames_are_compact_json_split_at_max_chars() -> None:
    frames = build_subscribe(["T.A", "T.B", "T.C", "T.D", "T.E"], 7)
    assert frames == [
        '{"action":"subscribe","params":"T.A,T.B"}',
        '{"action":"subscribe","params":"T.C,T.D"}',  # the second frame is filled as far as the first
        '{"action":"subscribe","params":"T.E"}',
    ]
    assert build_unsubscribe(["T.A"]) == ['{"action":"unsubscribe","params":"T.A"}']
    assert build_subscribe([]) == []


def test_status_array_is_one_frame_of_status_objects() -> None:
    text = status_array([("success", "subscribed to: T.A"), ("error", "not authorized")])
    assert text == (
        '[{"ev":"status","status":"success","message":"subscribed to: T.A"},'
        '{"ev":"status","status":"error","message":"not authorized"}]'
    )
    assert status_array([]) == "[]"
    assert json.loads(status_array([("a", "b")])) == [{"ev": "status", "status": "a", "message": "b"}]


def test_event_symbol_names_the_market_argument_when_it_is_wrong() -> None:
    with pytest.raises(ConfigurationError) as caught:
        event_symbol("nope", {"ev": "T", "sym": "A"})
    assert caught.value.field == "market"
    assert caught.value.message.startswith("market='nope' is not one of")


# ============================================================================================
# Decoder defaults


@pytest.mark.parametrize("use_msgspec", [True, False], ids=["msgspec", "dict"])
def test_received_at_ns_defaults_to_zero(use_msgspec: bool) -> None:
    decoder = Decoder("stocks", connection="c", use_msgspec=use_msgspec)
    frame = '[{"ev":"T","sym":"A","p":1,"s":1,"t":1},{"ev":"status","status":"success","message":"m"},{"ev":"ZZ"}]'
    events = decoder.decode(frame)
    assert [e.received_at_ns for e in events] == [0, 0, 0]
    objects = decoder.decode_objects([{"ev": "T", "sym": "A"}, {"ev": "status", "status": "s", "message": "m"}])
    assert [e.received_at_ns for e in objects] == [0, 0]


@pytest.mark.parametrize("use_msgspec", [True, False], ids=["msgspec", "dict"])
def test_a_status_among_data_is_stamped_and_shown_to_the_hook(use_msgspec: bool) -> None:
    decoder = Decoder("stocks", connection="conn-7", use_msgspec=use_msgspec)
    seen: list[dict[str, object]] = []
    decoder.on_server_status = seen.append
    obj = {"ev": "status", "status": "success", "message": "subscribed to: T.A"}

    (event,) = decoder.decode_objects([obj], received_at_ns=42)

    assert isinstance(event, StatusMessage)
    assert (event.status, event.message, event.received_at_ns, event.connection) == (
        "success", "subscribed to: T.A", 42, "conn-7"
    )  # fmt: skip
    assert event.from_server is True
    assert seen == [obj]


def test_a_non_object_element_is_previewed_in_the_decode_error() -> None:
    (event,) = Decoder("stocks", use_msgspec=False).decode("[5]")
    assert isinstance(event, StatusMessage)
    assert event.message == "array element is not an object: 5"


def test_unknown_ev_codes_are_logged_for_the_first_1000_codes_only(caplog: pytest.LogCaptureFixture) -> None:
    decoder = Decoder("stocks", connection="c", use_msgspec=False)
    caplog.set_level(logging.WARNING, logger=PROTOCOL_LOGGER)

    decoder.decode_objects([{"ev": f"Z{i}"} for i in range(1001)])
    decoder.decode_objects([{"ev": "Z0"}, {"ev": "Z1000"}, {"ev": "NEW"}])

    logged = [r for r in caplog.records if r.name == PROTOCOL_LOGGER]
    assert len(logged) == 1000  # a flood of distinct codes cannot flood the log, nor grow the set
    assert "'Z999'" in logged[-1].getMessage()
    assert len(decoder._unknown_logged) == 1000
    assert decoder.stats.unknown_events == 1004
    last = decoder.decode_objects([{"ev": "NEWER"}])[0]
    assert isinstance(last, UnknownEvent)
    assert last.event_type == "NEWER"
