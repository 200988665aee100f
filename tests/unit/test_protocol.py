"""massive_rt.protocol: channels, control frames and the decoder's handling of hostile input."""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from massive_rt.enums import Market
from massive_rt.errors import ConfigurationError
from massive_rt.models import EquityQuote, EquityTrade, Event, ForexQuote, LimitUpLimitDown, StatusMessage, UnknownEvent
from massive_rt.protocol import (
    DEFAULT_MAX_PARAMS_CHARS,
    Channel,
    Decoder,
    DecodeStats,
    build_auth,
    build_subscribe,
    build_unsubscribe,
    channel_matches,
    event_symbol,
    parse_channel,
    parse_channels,
    parse_control,
    split_params,
    status_frame,
)

LOADS: dict[str, Callable[[Any], Any]] = {"json": json.loads, "orjson": orjson.loads}
PROTOCOL_LOGGER = "massive_rt.protocol"


@pytest.fixture(params=sorted(LOADS))
def loads(request: pytest.FixtureRequest) -> Callable[[Any], Any]:
    """Each decoder test runs with the standard library's and orjson's ``loads``."""
    return LOADS[request.param]


def _is_decode_error(event: Event) -> bool:
    return isinstance(event, StatusMessage) and event.status == "decode_error" and not event.from_server


# ============================================================================================
# Channels


@pytest.mark.parametrize(
    ("market", "text", "prefix", "ticker"),
    [
        ("stocks", "T.AAPL", "T", "AAPL"),
        ("stocks", "T.BRK.B", "T", "BRK.B"),
        ("stocks", "Q.BRK.A", "Q", "BRK.A"),
        ("stocks", "AM.*", "AM", "*"),
        ("stocks", "A.*", "A", "*"),
        ("stocks", "Q.*", "Q", "*"),
        ("stocks", "LULD.MSFT", "LULD", "MSFT"),
        ("stocks", "NOI.NTEST.Q", "NOI", "NTEST.Q"),
        ("stocks", "FMV.AAPL", "FMV", "AAPL"),
        ("stocks", "LV.*", "LV", "*"),
        ("options", "Q.O:SPY241220P00720000", "Q", "O:SPY241220P00720000"),
        ("options", "T.*", "T", "*"),
        ("options", "AM.O:AMC210827C00037000", "AM", "O:AMC210827C00037000"),
        ("crypto", "XT.BTC-USD", "XT", "BTC-USD"),
        ("crypto", "XL2.*", "XL2", "*"),
        ("crypto", "XAS.ETH-USD", "XAS", "ETH-USD"),
        ("crypto", "FMV.X:BTC-USD", "FMV", "X:BTC-USD"),
        ("forex", "C.EUR/USD", "C", "EUR/USD"),
        ("forex", "CA.*", "CA", "*"),
        ("forex", "CAS.USD/JPY", "CAS", "USD/JPY"),
        ("indices", "V.I:SPX", "V", "I:SPX"),
        ("indices", "AM.I:NDX", "AM", "I:NDX"),
        ("futures", "T.ESZ4", "T", "ESZ4"),
        ("futures/cme", "A.*", "A", "*"),
        ("futures/cbot", "Q.ZCH5", "Q", "ZCH5"),
        ("futures/nymex", "AM.CLF5", "AM", "CLF5"),
        ("futures/comex", "T.GCG5", "T", "GCG5"),
        (Market.STOCKS, "T.AAPL", "T", "AAPL"),
        ("STOCKS", "T.AAPL", "T", "AAPL"),
    ],
)
def test_valid_channel_parses_into_prefix_and_ticker(market: Market | str, text: str, prefix: str, ticker: str) -> None:
    channel = parse_channel(text, market)

    assert channel == Channel(prefix, ticker)
    assert str(channel) == text
    assert channel.is_wildcard is (ticker == "*")


def test_dotted_ticker_splits_on_first_dot() -> None:
    assert parse_channel("T.BRK.B") == Channel("T", "BRK.B")
    assert parse_channel("AM.A.B.C") == Channel("AM", "A.B.C")


def test_parse_channel_defaults_to_stocks() -> None:
    assert parse_channel("LULD.*") == Channel("LULD", "*")
    with pytest.raises(ConfigurationError):
        parse_channel("XT.BTC-USD")


@pytest.mark.parametrize(
    ("market", "text"),
    [
        pytest.param("stocks", "V.AAPL", id="index-value-on-stocks"),
        pytest.param("stocks", "XT.BTC-USD", id="crypto-prefix-on-stocks"),
        pytest.param("stocks", "C.EUR/USD", id="forex-prefix-on-stocks"),
        pytest.param("stocks", "ZZ.AAPL", id="made-up-prefix"),
        pytest.param("stocks", "t.AAPL", id="lowercase-prefix"),
        pytest.param("stocks", "*.AAPL", id="wildcard-prefix"),
        pytest.param("crypto", "T.AAPL", id="stock-trades-on-crypto"),
        pytest.param("indices", "T.I:SPX", id="trades-on-indices"),
        pytest.param("forex", "XQ.BTC-USD", id="crypto-prefix-on-forex"),
        pytest.param("options", "NOI.O:X", id="imbalance-on-options"),
        pytest.param("futures", "LULD.ESZ4", id="luld-on-futures"),
        pytest.param("futures/cme", "FMV.ESZ4", id="fmv-on-futures"),
        pytest.param("stocks", "T.", id="empty-ticker"),
        pytest.param("stocks", ".AAPL", id="empty-prefix"),
        pytest.param("stocks", ".", id="only-a-dot"),
        pytest.param("stocks", "", id="empty-string"),
        pytest.param("stocks", "TAAPL", id="no-dot"),
        pytest.param("stocks", "T.AAPL,T.MSFT", id="comma-list"),
        pytest.param("stocks", "T.AAPL,", id="trailing-comma"),
        pytest.param("stocks", " T.AAPL", id="leading-space"),
        pytest.param("stocks", "T. AAPL", id="space-after-dot"),
        pytest.param("stocks", "T.AAPL ", id="trailing-space"),
        pytest.param("stocks", "T.AAPL\n", id="newline"),
        pytest.param("stocks", "T.AA\tPL", id="tab"),
        pytest.param("stocks", "T.AA\u00a0PL", id="non-breaking-space"),
        pytest.param("stocks", "T.AA*", id="partial-wildcard-suffix"),
        pytest.param("stocks", "T.*A", id="partial-wildcard-prefix"),
        pytest.param("stocks", "T.**", id="double-wildcard"),
        pytest.param("stocks", "T.A.*", id="wildcard-after-dotted-ticker"),
        pytest.param("options", "Q.*", id="options-quotes-wildcard"),
    ],
)
def test_invalid_channel_raises_configuration_error_naming_it(market: str, text: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_channel(text, market)

    assert info.value.field == "channels"
    assert repr(text) in str(info.value)


@pytest.mark.parametrize("value", [None, 5, 1.5, b"T.AAPL", ["T.AAPL"], Channel("T", "AAPL")], ids=repr)
def test_non_string_channel_raises_configuration_error(value: object) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_channel(value)

    assert info.value.field == "channels"
    assert repr(value) in str(info.value)


def test_unknown_prefix_error_lists_the_prefixes_of_the_market() -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_channel("V.AAPL", "stocks")

    assert "'V'" in info.value.message
    assert "stocks" in info.value.message
    assert "LULD" in info.value.message


def test_options_trades_wildcard_is_allowed_but_quotes_wildcard_is_not() -> None:
    assert parse_channel("T.*", "options").is_wildcard
    assert parse_channel("Q.*", "stocks").is_wildcard
    with pytest.raises(ConfigurationError, match="wildcard"):
        parse_channel("Q.*", "options")


def test_parse_channel_rejects_an_unknown_market() -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_channel("T.AAPL", "bonds")

    assert info.value.field == "market"


def test_parse_channels_dedups_in_first_seen_order() -> None:
    channels = ["Q.MSFT", "T.AAPL", "Q.MSFT", "AM.*", "T.AAPL", "T.BRK.B"]

    assert parse_channels(channels) == ("Q.MSFT", "T.AAPL", "AM.*", "T.BRK.B")


def test_parse_channels_accepts_a_single_string_as_one_channel() -> None:
    assert parse_channels("T.AAPL") == ("T.AAPL",)


def test_parse_channels_accepts_any_iterable() -> None:
    assert parse_channels(iter(["XT.BTC-USD", "XQ.*"]), "crypto") == ("XT.BTC-USD", "XQ.*")
    assert parse_channels((), "crypto") == ()


def test_parse_channels_validates_for_the_market() -> None:
    assert parse_channels(["C.EUR/USD", "CA.*"], Market.FOREX) == ("C.EUR/USD", "CA.*")
    with pytest.raises(ConfigurationError, match=r"'T\.AAPL'"):
        parse_channels(["C.EUR/USD", "T.AAPL"], "forex")


def test_parse_channels_names_the_first_invalid_channel() -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_channels(["T.AAPL", "T.AAPL,T.MSFT", "TX"])

    assert info.value.field == "channels"
    assert "'T.AAPL,T.MSFT'" in str(info.value)
    assert "'TX'" not in str(info.value)


def test_channels_order_by_prefix_then_ticker() -> None:
    assert sorted([Channel("T", "B"), Channel("Q", "Z"), Channel("T", "A")]) == [
        Channel("Q", "Z"),
        Channel("T", "A"),
        Channel("T", "B"),
    ]


@pytest.mark.parametrize(
    ("channel", "ev", "symbol", "expected"),
    [
        ("T.AAPL", "T", "AAPL", True),
        ("T.AAPL", "T", "MSFT", False),
        ("T.AAPL", "Q", "AAPL", False),
        ("T.*", "T", "ANYTHING", True),
        ("T.*", "Q", "AAPL", False),
        ("A.*", "AM", "AAPL", False),
        ("AM.*", "A", "AAPL", False),
        ("A.AAPL", "AM", "AAPL", False),
        ("T.BRK.B", "T", "BRK.B", True),
        ("T.BRK", "T", "BRK.B", False),
        ("T.AAPL", "T", "aapl", False),
        ("XT.BTC-USD", "XT", "BTC-USD", True),
        ("C.EUR/USD", "C", "EUR/USD", True),
        ("V.I:SPX", "V", "I:SPX", True),
        ("T.AAPL", "T", None, False),
        ("T.*", "T", None, True),
    ],
)
def test_channel_matches(channel: str, ev: str, symbol: object, expected: bool) -> None:
    assert channel_matches(channel, ev, symbol) is expected


@pytest.mark.parametrize(
    ("market", "data", "expected"),
    [
        pytest.param("stocks", {"ev": "T", "sym": "AAPL"}, "AAPL", id="trade-sym"),
        pytest.param("stocks", {"ev": "LULD", "T": "MSFT", "sym": "NOT-THIS"}, "MSFT", id="luld-T"),
        pytest.param("stocks", {"ev": "NOI", "T": "NTEST.Q"}, "NTEST.Q", id="noi-T"),
        pytest.param("stocks", {"ev": "FMV", "sym": "AAPL", "fmv": 1.0}, "AAPL", id="fmv-sym"),
        pytest.param("stocks", {"ev": "LV", "sym": "AAPL", "val": 1.0}, "AAPL", id="lv-sym"),
        pytest.param("indices", {"ev": "V", "T": "I:SPX", "sym": "NOT-THIS"}, "I:SPX", id="index-value-T"),
        pytest.param("indices", {"ev": "AM", "sym": "I:SPX"}, "I:SPX", id="index-agg-sym"),
        pytest.param("forex", {"ev": "C", "p": "USD/CNH", "pair": "NOT-THIS"}, "USD/CNH", id="forex-quote-p"),
        pytest.param("forex", {"ev": "CA", "pair": "USD/EUR", "p": 1.5}, "USD/EUR", id="forex-agg-pair"),
        pytest.param("crypto", {"ev": "XT", "pair": "BTC-USD", "p": 33021.9}, "BTC-USD", id="crypto-trade-pair"),
        pytest.param("crypto", {"ev": "XL2", "pair": "BTC-USD"}, "BTC-USD", id="level2-pair"),
        pytest.param("crypto", {"ev": "AM", "sym": "X:BTC-USD"}, "X:BTC-USD", id="crypto-launchpad-agg-sym"),
        pytest.param("futures/cme", {"ev": "Q", "sym": "ESZ4"}, "ESZ4", id="futures-sym"),
        pytest.param("stocks", {"ev": "T"}, None, id="missing-symbol"),
        pytest.param("stocks", {"ev": "ZZ", "sym": "A"}, "A", id="unknown-ev-sym"),
        pytest.param("stocks", {"ev": "ZZ", "pair": "B"}, "B", id="unknown-ev-pair"),
        pytest.param("stocks", {"ev": "ZZ", "T": "C"}, "C", id="unknown-ev-T"),
        pytest.param("stocks", {"sym": "D"}, "D", id="no-ev"),
    ],
)
def test_event_symbol_reads_the_key_of_the_schema(market: str, data: dict[str, Any], expected: object) -> None:
    assert event_symbol(market, data) == expected


# ============================================================================================
# Control frames


def test_auth_frame_is_compact_json_with_action_and_params() -> None:
    frame = build_auth("SECRET-KEY-123")

    assert frame == '{"action":"auth","params":"SECRET-KEY-123"}'


def test_auth_frame_escapes_the_key() -> None:
    key = 'we"ird\\key\u00e9'

    assert json.loads(build_auth(key)) == {"action": "auth", "params": key}


@pytest.mark.parametrize(("build", "action"), [(build_subscribe, "subscribe"), (build_unsubscribe, "unsubscribe")])
def test_subscribe_frames_have_action_and_comma_joined_params(
    build: Callable[[list[str]], list[str]], action: str
) -> None:
    frames = build(["T.AAPL", "Q.MSFT", "AM.*"])

    assert frames == [f'{{"action":"{action}","params":"T.AAPL,Q.MSFT,AM.*"}}']


@pytest.mark.parametrize("build", [build_subscribe, build_unsubscribe])
def test_no_channels_means_no_frames(build: Callable[[list[str]], list[str]]) -> None:
    assert build([]) == []


def _many_channels(count: int) -> list[str]:
    prefixes = ("T", "Q", "AM", "A", "LULD")
    return [f"{prefixes[i % 5]}.S{i:05d}{'X' * (i % 7)}" for i in range(count)]


@pytest.mark.parametrize("build", [build_subscribe, build_unsubscribe])
@pytest.mark.parametrize("max_chars", [30, 100, 1_000, 4_096, DEFAULT_MAX_PARAMS_CHARS])
def test_batches_of_3000_channels_respect_max_chars_and_keep_order(
    build: Callable[..., list[str]], max_chars: int
) -> None:
    channels = _many_channels(3_000)

    frames = build(channels, max_chars=max_chars)

    messages = [json.loads(frame) for frame in frames]
    assert all(set(m) == {"action", "params"} for m in messages)
    assert {m["action"] for m in messages} == {"subscribe" if build is build_subscribe else "unsubscribe"}
    assert all(0 < len(m["params"]) <= max_chars for m in messages)
    assert [ch for m in messages for ch in m["params"].split(",")] == channels
    assert len(frames) >= math.ceil(len(",".join(channels)) / max_chars)


def test_default_batching_sends_3000_channels_in_few_frames() -> None:
    channels = _many_channels(3_000)

    frames = build_subscribe(channels)

    assert all(len(json.loads(f)["params"]) <= DEFAULT_MAX_PARAMS_CHARS for f in frames)
    assert len(frames) <= math.ceil(len(",".join(channels)) / DEFAULT_MAX_PARAMS_CHARS) + 1


def test_batches_are_packed_greedily() -> None:
    channels = _many_channels(500)

    params = [json.loads(f)["params"] for f in build_subscribe(channels, max_chars=200)]

    # Adding the next frame's first channel to any frame would overflow it.
    for current, following in itertools.pairwise(params):
        assert len(current) + 1 + len(following.split(",")[0]) >= 200


def test_batches_fill_params_up_to_exactly_max_chars() -> None:
    frames = build_subscribe(["T.A", "T.B"], max_chars=len("T.A,T.B"))

    assert frames == ['{"action":"subscribe","params":"T.A,T.B"}']


def test_a_channel_longer_than_max_chars_gets_a_frame_of_its_own() -> None:
    frames = build_subscribe(["T.A", "T.VERYLONGTICKER", "T.B"], max_chars=8)

    assert [json.loads(f)["params"] for f in frames] == ["T.A", "T.VERYLONGTICKER", "T.B"]


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (build_auth("k"), ("auth", "k")),
        (build_subscribe(["T.AAPL", "Q.MSFT"])[0], ("subscribe", "T.AAPL,Q.MSFT")),
        (build_unsubscribe(["T.BRK.B"])[0], ("unsubscribe", "T.BRK.B")),
        ('{"action": "subscribe", "params": "AM.AAPL, AM.MSFT"}', ("subscribe", "AM.AAPL, AM.MSFT")),
        (b'{"action":"auth","params":"k"}', ("auth", "k")),
        ('{"params":"T.A","action":"subscribe","extra":1}', ("subscribe", "T.A")),
        ('{"action":"auth"}', ("auth", "")),
    ],
)
def test_parse_control_returns_action_and_params(frame: str | bytes, expected: tuple[str, str]) -> None:
    assert parse_control(frame) == expected


@pytest.mark.parametrize(
    "frame",
    [
        "",
        "not json",
        "{\u201caction\u201d: \u201cauth\u201d}",
        '[{"action":"auth","params":"k"}]',
        "5",
        "null",
        '"auth"',
        '{"params":"k"}',
        '{"action":5,"params":"k"}',
        '{"action":null,"params":"k"}',
        '{"action":"subscribe","params":["T.A"]}',
        '{"action":"subscribe","params":null}',
        b"\xff\xfe",
        "[" * 100_000,
        status_frame("success", "subscribed to: T.AAPL"),
    ],
    ids=lambda f: repr(f)[:40],
)
def test_parse_control_rejects_what_is_not_a_control_frame(frame: str | bytes) -> None:
    assert parse_control(frame) is None


def test_status_frame_is_an_array_with_one_status_object() -> None:
    frame = status_frame("auth_success", "authenticated")

    assert frame == '[{"ev":"status","status":"auth_success","message":"authenticated"}]'


def test_status_frame_decodes_to_a_server_status() -> None:
    (event,) = Decoder("stocks").decode(status_frame("max_connections", 'Maximum "number" exceeded.'))

    assert isinstance(event, StatusMessage)
    assert (event.status, event.message, event.from_server) == ("max_connections", 'Maximum "number" exceeded.', True)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ("T.AAPL,Q.MSFT", ["T.AAPL", "Q.MSFT"]),
        ("AM.AAPL, AM.MSFT", ["AM.AAPL", "AM.MSFT"]),
        (" T.A ,, T.B ,", ["T.A", "T.B"]),
        ("", []),
        ("T.BRK.B", ["T.BRK.B"]),
    ],
)
def test_split_params_tolerates_spaces_and_empty_parts(params: str, expected: list[str]) -> None:
    assert list(split_params(params)) == expected


# ============================================================================================
# Decoder: hostile input never raises and has a defined result


def test_bare_object_is_decoded_as_one_event(loads: Callable[[Any], Any]) -> None:
    events = Decoder("stocks", loads=loads).decode('{"ev":"T","sym":"AAPL","p":1.5}')

    assert len(events) == 1
    assert isinstance(events[0], EquityTrade)
    assert (events[0].symbol, events[0].price) == ("AAPL", 1.5)


def test_bare_status_object_is_a_server_status(loads: Callable[[Any], Any]) -> None:
    (event,) = Decoder("stocks", loads=loads).decode('{"ev":"status","status":"connected","message":"Hi"}')

    assert isinstance(event, StatusMessage)
    assert (event.status, event.message, event.from_server) == ("connected", "Hi", True)


@pytest.mark.parametrize(
    ("obj", "status", "message"),
    [
        ({"ev": "status", "status": "connected"}, "connected", ""),
        ({"ev": "status", "message": "no status"}, "", "no status"),
        ({"ev": "status"}, "", ""),
        ({"ev": "status", "status": 5, "message": ["x"]}, "", ""),
        ({"ev": "status", "status": None, "message": None}, "", ""),
    ],
)
def test_status_with_missing_or_odd_fields_gets_empty_strings(
    loads: Callable[[Any], Any], obj: dict[str, Any], status: str, message: str
) -> None:
    (event,) = Decoder("stocks", loads=loads).decode(json.dumps([obj]))

    assert isinstance(event, StatusMessage)
    assert (event.status, event.message, event.from_server, event.event_type) == (status, message, True, "status")


@pytest.mark.parametrize(
    "obj",
    [{"sym": "AAPL", "p": 1.0}, {}, {"ev": None}, {"ev": 5}, {"ev": ["T"]}, {"ev": {"x": 1}}, {"ev": True}],
    ids=repr,
)
def test_object_without_a_string_ev_is_unknown_event_with_type_none(
    loads: Callable[[Any], Any], obj: dict[str, Any]
) -> None:
    decoder = Decoder("stocks", loads=loads)

    (event,) = decoder.decode(json.dumps([obj]))

    assert type(event) is UnknownEvent
    assert event.event_type is None
    assert event.data == obj
    assert decoder.stats.unknown_events == 1


@pytest.mark.parametrize("ev", ["ZZ", "XT", "t", "", "STATUS", "T "])
def test_unknown_ev_is_delivered_as_unknown_event(loads: Callable[[Any], Any], ev: str) -> None:
    obj = {"ev": ev, "sym": "AAPL", "nested": {"a": [1, 2.5, None]}}

    (event,) = Decoder("stocks", connection="c9", loads=loads).decode(json.dumps([obj]), received_at_ns=77)

    assert type(event) is UnknownEvent
    assert (event.event_type, event.data, event.connection, event.received_at_ns) == (ev, obj, "c9", 77)


def test_unknown_ev_is_logged_once_per_code(caplog: pytest.LogCaptureFixture) -> None:
    decoder = Decoder("stocks", connection="conn-a")
    caplog.set_level(logging.WARNING, logger=PROTOCOL_LOGGER)

    for frame in ('[{"ev":"ZZ"},{"ev":"ZZ"}]', '[{"ev":"YY"}]', '[{"ev":"ZZ"},{"sym":"A"},{"ev":5}]', '[{"x":1}]'):
        decoder.decode(frame)

    records = [r for r in caplog.records if r.name == PROTOCOL_LOGGER]
    assert [r.levelno for r in records] == [logging.WARNING] * 4
    messages = [r.getMessage() for r in records]
    assert "'ZZ'" in messages[0]
    assert "'YY'" in messages[1]
    assert "unknown event type None " in messages[2]  # missing ev: logged once, as None
    assert "unknown event type 5 " in messages[3]
    assert all("stocks" in m and "[conn-a]" in m for m in messages)
    assert decoder.stats.unknown_events == 7


def test_each_decoder_logs_its_unknown_codes_independently(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=PROTOCOL_LOGGER)

    Decoder("stocks").decode('[{"ev":"ZZ"}]')
    Decoder("crypto").decode('[{"ev":"ZZ"}]')

    assert len([r for r in caplog.records if r.name == PROTOCOL_LOGGER]) == 2


def test_known_events_and_statuses_are_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=PROTOCOL_LOGGER)

    Decoder("stocks").decode('[{"ev":"T","sym":"A"},{"ev":"status","status":"success","message":"m"}]')

    assert [r for r in caplog.records if r.name == PROTOCOL_LOGGER] == []


@pytest.mark.parametrize(
    "frame",
    ["[{", "[", "]", "{", "", "   ", "[1,]", "[{'ev':'T'}]", '[{"ev":"T"}] trailing', "\ufeff[]", "nul", b"", b"[{"],
    ids=repr,
)
def test_invalid_json_yields_one_decode_error(loads: Callable[[Any], Any], frame: str | bytes) -> None:
    decoder = Decoder("stocks", connection="c", loads=loads)

    events = decoder.decode(frame, received_at_ns=5)

    assert len(events) == 1
    assert _is_decode_error(events[0])
    assert isinstance(events[0], StatusMessage)
    assert events[0].message.startswith("frame is not valid JSON")
    assert (events[0].connection, events[0].received_at_ns) == ("c", 5)


@pytest.mark.parametrize(
    "frame",
    [b'[{"ev":"T","sym":"\xff"}]', b"\xff\xfe\xfd", b'[{"ev":"T","sym":"\xc3"}]', b"\xed\xa0\x80"],
    ids=repr,
)
def test_invalid_utf8_bytes_yield_one_decode_error(loads: Callable[[Any], Any], frame: bytes) -> None:
    events = Decoder("stocks", loads=loads).decode(frame)

    assert len(events) == 1
    assert _is_decode_error(events[0])


def test_binary_frame_with_valid_json_decodes_like_text(loads: Callable[[Any], Any]) -> None:
    text = '[{"ev":"T","sym":"AAPL","p":1.5},{"ev":"Q","sym":"MSFT","bp":2.5}]'

    from_bytes = Decoder("stocks", loads=loads).decode(text.encode())
    from_text = Decoder("stocks", loads=loads).decode(text)

    assert from_bytes == from_text
    assert [type(e) for e in from_bytes] == [EquityTrade, EquityQuote]


def test_utf8_text_in_a_binary_frame_is_decoded(loads: Callable[[Any], Any]) -> None:
    (event,) = Decoder("stocks", loads=loads).decode('[{"ev":"ZZ","name":"Société Générale €"}]'.encode())

    assert isinstance(event, UnknownEvent)
    assert event.data["name"] == "Société Générale €"


def test_non_object_elements_become_decode_errors_in_place(loads: Callable[[Any], Any]) -> None:
    decoder = Decoder("stocks", loads=loads)
    frame = '[1,{"ev":"T","sym":"A"},"x",null,[],{"ev":"Q","sym":"B"},true,2.5,[{"ev":"T"}]]'

    events = decoder.decode(frame)

    kinds = ["err" if _is_decode_error(e) else type(e).__name__ for e in events]
    assert kinds == ["err", "EquityTrade", "err", "err", "err", "EquityQuote", "err", "err", "err"]
    assert all(e.message.startswith("array element is not an object") for e in events if _is_decode_error(e))
    assert decoder.stats == DecodeStats(frames=1, events=9, decode_errors=7, unknown_events=0)


@pytest.mark.parametrize("frame", ["5", "-1.5", '"text"', "null", "true", "false", "0"])
def test_json_scalar_frame_yields_one_decode_error(loads: Callable[[Any], Any], frame: str) -> None:
    decoder = Decoder("stocks", loads=loads)

    events = decoder.decode(frame)

    assert len(events) == 1
    assert _is_decode_error(events[0])
    assert isinstance(events[0], StatusMessage)
    assert events[0].message.startswith("frame is not a JSON array or object")
    assert decoder.stats == DecodeStats(frames=1, events=0, decode_errors=1, unknown_events=0)


def test_empty_array_yields_no_events(loads: Callable[[Any], Any]) -> None:
    decoder = Decoder("stocks", loads=loads)

    assert decoder.decode("[]") == []
    assert decoder.stats == DecodeStats(frames=1, events=0, decode_errors=0, unknown_events=0)


@pytest.mark.parametrize("depth", [1_100, 10_000, 200_000])
def test_deeply_nested_array_frame_yields_one_decode_error(loads: Callable[[Any], Any], depth: int) -> None:
    events = Decoder("stocks", loads=loads).decode("[" * depth + "]" * depth)

    assert len(events) == 1
    assert _is_decode_error(events[0])


def test_deeply_nested_unclosed_array_yields_one_decode_error(loads: Callable[[Any], Any]) -> None:
    events = Decoder("stocks", loads=loads).decode("[" * 100_000)

    assert len(events) == 1
    assert _is_decode_error(events[0])


def test_nested_arrays_within_the_parser_limit_yield_one_decode_error_for_the_element(
    loads: Callable[[Any], Any],
) -> None:
    events = Decoder("stocks", loads=loads).decode("[" * 50 + "]" * 50)

    assert len(events) == 1
    assert _is_decode_error(events[0])
    assert isinstance(events[0], StatusMessage)
    assert events[0].message.startswith("array element is not an object")


@pytest.mark.parametrize(
    "loads_name",
    [
        "json",
        pytest.param(
            "orjson",
        ),
    ],
)
def test_no_nesting_depth_makes_decode_raise(loads_name: str) -> None:
    decoder = Decoder("stocks", loads=LOADS[loads_name])

    for depth in range(1, 1_100):
        events = decoder.decode("[" * depth + "]" * depth)
        assert len(events) == (0 if depth == 1 else 1)
        assert all(_is_decode_error(e) for e in events)


def test_deeply_nested_object_inside_an_event_is_kept(loads: Callable[[Any], Any]) -> None:
    nested = '{"a":' * 200 + "1" + "}" * 200

    (event,) = Decoder("stocks", loads=loads).decode('[{"ev":"ZZ","deep":' + nested + "}]")

    assert isinstance(event, UnknownEvent)
    value = event.data["deep"]
    for _ in range(200):
        value = value["a"]
    assert value == 1


@pytest.mark.parametrize(
    ("literal", "expected"), [("NaN", math.nan), ("Infinity", math.inf), ("-Infinity", -math.inf), ("1e400", math.inf)]
)
def test_non_finite_numbers_follow_the_json_decoder(literal: str, expected: float) -> None:
    frame = '[{"ev":"T","sym":"A","p":' + literal + "}]"

    (std,) = Decoder("stocks", loads=json.loads).decode(frame)
    (fast,) = Decoder("stocks", loads=orjson.loads).decode(frame)

    # The standard library accepts them (like the official client); orjson refuses the frame.
    assert isinstance(std, EquityTrade)
    assert isinstance(std.price, float)
    assert math.isnan(std.price) if math.isnan(expected) else std.price == expected
    assert _is_decode_error(fast)


def test_duplicate_keys_keep_the_last_value(loads: Callable[[Any], Any]) -> None:
    (event,) = Decoder("stocks", loads=loads).decode('[{"ev":"T","sym":"A","p":1,"p":2,"sym":"B"}]')

    assert isinstance(event, EquityTrade)
    assert (event.symbol, event.price) == ("B", 2)


def test_duplicate_ev_key_routes_on_the_last_value(loads: Callable[[Any], Any]) -> None:
    (event,) = Decoder("stocks", loads=loads).decode('[{"ev":"ZZ","sym":"A","ev":"Q"}]')

    assert isinstance(event, EquityQuote)
    assert event.event_type == "Q"


def test_wrong_field_types_are_kept_as_is(loads: Callable[[Any], Any]) -> None:
    frame = '[{"ev":"T","sym":5,"p":"114.125","s":null,"c":"12","x":{"a":1},"t":1.5,"i":12345,"z":true}]'

    (event,) = Decoder("stocks", loads=loads).decode(frame)

    assert isinstance(event, EquityTrade)
    assert (event.symbol, event.price, event.size, event.conditions) == (5, "114.125", None, "12")
    assert (event.exchange, event.timestamp, event.id, event.tape) == ({"a": 1}, 1.5, 12345, True)


def test_forex_exchange_id_string_from_the_spec_example_is_kept(loads: Callable[[Any], Any]) -> None:
    (event,) = Decoder("forex", loads=loads).decode('[{"ev":"C","p":"USD/CNH","x":"44","a":6.83366,"b":6.83363}]')

    assert isinstance(event, ForexQuote)
    assert event.exchange_id == "44"


@pytest.mark.parametrize("data", [None, 5, 1.5, ["[]"], {"ev": "T"}], ids=repr)
def test_input_that_is_not_text_or_bytes_yields_one_decode_error(loads: Callable[[Any], Any], data: Any) -> None:
    events = Decoder("stocks", loads=loads).decode(data)

    assert len(events) == 1
    assert _is_decode_error(events[0])


def test_str_with_a_lone_surrogate_does_not_raise(loads: Callable[[Any], Any]) -> None:
    events = Decoder("stocks", loads=loads).decode('[{"ev":"ZZ","s":"\ud800"}]')

    assert len(events) == 1
    assert isinstance(events[0], (UnknownEvent, StatusMessage))


def test_decode_error_message_previews_a_huge_frame_briefly() -> None:
    frame = "[" + "x" * 1_000_000

    (event,) = Decoder("stocks").decode(frame)

    assert isinstance(event, StatusMessage)
    assert len(event.message) < 300
    assert "chars)" in event.message


def test_statuses_and_data_share_an_array_in_wire_order(loads: Callable[[Any], Any]) -> None:
    frame = json.dumps([
        {"ev": "status", "status": "success", "message": "subscribed to: T.AAPL"},
        {"ev": "T", "sym": "AAPL"},
        {"ev": "LULD", "T": "AAPL", "h": 2.0, "l": 1.0},
        {"ev": "status", "status": "error", "message": "not authorized"},
    ])  # fmt: skip

    events = Decoder("stocks", loads=loads).decode(frame)

    assert [type(e) for e in events] == [StatusMessage, EquityTrade, LimitUpLimitDown, StatusMessage]
    assert [getattr(e, "status", None) for e in events] == ["success", None, None, "error"]


def test_decoder_accepts_market_strings_case_insensitively() -> None:
    assert Decoder("STOCKS").market is Market.STOCKS
    assert Decoder("Futures/CME").market is Market.FUTURES_CME


def test_decoder_rejects_an_unknown_market() -> None:
    with pytest.raises(ConfigurationError) as info:
        Decoder("bonds")

    assert info.value.field == "market"


def test_decode_objects_decodes_already_parsed_objects() -> None:
    decoder = Decoder("crypto", connection="c")

    events = decoder.decode_objects([{"ev": "XT", "pair": "BTC-USD"}, 5, {"ev": "ZZ"}], received_at_ns=3)

    assert [type(e).__name__ for e in events] == ["CryptoTrade", "StatusMessage", "UnknownEvent"]
    assert all((e.connection, e.received_at_ns) == ("c", 3) for e in events)
    assert decoder.stats == DecodeStats(frames=1, events=3, decode_errors=1, unknown_events=1)


def test_stats_count_frames_events_errors_and_unknowns_exactly(loads: Callable[[Any], Any]) -> None:
    decoder = Decoder("stocks", loads=loads)
    frames: list[str | bytes] = [
        '[{"ev":"T","sym":"A"},{"ev":"Q","sym":"B"}]',  # 2 events
        '{"ev":"AM","sym":"C"}',  # bare object: 1 event
        "[]",  # no events
        "not json",  # frame-level decode error (not an event of an array)
        "5",  # frame-level decode error
        b"\xff",  # frame-level decode error
        '[{"ev":"ZZ"},7,{"sym":"x"},{"ev":"status","status":"success","message":"m"}]',  # 4 events: 2 unknown, 1 err
    ]

    for frame in frames:
        decoder.decode(frame)

    assert decoder.stats == DecodeStats(frames=7, events=7, decode_errors=4, unknown_events=2)


def test_stats_accumulate_across_decode_and_decode_objects() -> None:
    decoder = Decoder("stocks")

    decoder.decode('[{"ev":"T"}]')
    decoder.decode_objects([{"ev": "T"}, {"ev": "T"}])
    decoder.decode_objects([])

    assert decoder.stats == DecodeStats(frames=3, events=3, decode_errors=0, unknown_events=0)
