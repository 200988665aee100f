"""Typed events: every docs/protocol.md §4.3 example decodes to the right class with exact values.

The expected class per (market, ev) is written out here from docs/protocol.md §4.2 (not read from
``massive_rt``) and cross-checked against the official client's ``MARKET_EVENT_MAP``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import attrs
import massive.websocket.models as official
import orjson
import pytest
from massive.websocket.models import MARKET_EVENT_MAP as OFFICIAL_MARKET_EVENT_MAP

from massive_rt.enums import Market
from massive_rt.models import (
    EVENT_CLASSES,
    CryptoQuote,
    CryptoTrade,
    CurrencyAgg,
    EquityAgg,
    EquityQuote,
    EquityTrade,
    Event,
    FairMarketValue,
    ForexQuote,
    FuturesAgg,
    FuturesQuote,
    FuturesTrade,
    Imbalance,
    IndexValue,
    LaunchpadValue,
    Level2Book,
    LimitUpLimitDown,
    MarketEvent,
    RawFrame,
    StatusMessage,
    UnknownEvent,
    to_wire,
)
from massive_rt.protocol import MARKET_EVENTS, Decoder

Wire = dict[str, Any]

FUTURES_MARKETS = ("futures", "futures/cme", "futures/cbot", "futures/nymex", "futures/comex")
_FUTURES_TABLE = {"T": FuturesTrade, "Q": FuturesQuote, "A": FuturesAgg, "AM": FuturesAgg}

#: docs/protocol.md §4.2, written out independently of massive_rt.protocol.MARKET_EVENTS.
EXPECTED_CLASS: dict[str, dict[str, type[MarketEvent]]] = {
    "stocks": {"T": EquityTrade, "Q": EquityQuote, "A": EquityAgg, "AM": EquityAgg, "LULD": LimitUpLimitDown,
               "NOI": Imbalance, "FMV": FairMarketValue, "LV": LaunchpadValue},
    "options": {"T": EquityTrade, "Q": EquityQuote, "A": EquityAgg, "AM": EquityAgg, "FMV": FairMarketValue,
                "LV": LaunchpadValue},
    "forex": {"C": ForexQuote, "CA": CurrencyAgg, "CAS": CurrencyAgg, "FMV": FairMarketValue, "AM": EquityAgg,
              "LV": LaunchpadValue},
    "crypto": {"XT": CryptoTrade, "XQ": CryptoQuote, "XL2": Level2Book, "XA": CurrencyAgg, "XAS": CurrencyAgg,
               "FMV": FairMarketValue, "AM": EquityAgg, "LV": LaunchpadValue},
    "indices": {"A": EquityAgg, "AM": EquityAgg, "V": IndexValue},
    **dict.fromkeys(FUTURES_MARKETS, _FUTURES_TABLE),
}  # fmt: skip

LOADS: dict[str, Callable[[Any], Any]] = {"json": json.loads, "orjson": orjson.loads}


@attrs.frozen
class Example:
    """A wire object from docs/protocol.md §4.3 and the exact attributes it must decode to."""

    id: str
    cls: type[MarketEvent]
    wire: Wire
    attributes: dict[str, Any]

    def markets(self) -> list[str]:
        """Every market where this ``ev`` decodes to ``cls``."""
        return [m for m, table in EXPECTED_CLASS.items() if table.get(self.wire["ev"]) is self.cls]


def _agg(ev: str, base: Wire) -> Wire:
    return {**base, "ev": ev}


STOCK_TRADE = {"ev": "T", "sym": "MSFT", "x": 4, "i": "12345", "z": 3, "p": 114.125, "s": 100, "c": [0, 12],
               "t": 1536036818784, "q": 3681328}  # fmt: skip
OPTION_TRADE = {"ev": "T", "sym": "O:AMC210827C00037000", "x": 65, "p": 1.54, "s": 1, "c": [233], "t": 1629820676333,
                "q": 651921857}  # fmt: skip
STOCK_QUOTE = {"ev": "Q", "sym": "MSFT", "bx": 4, "bp": 114.125, "bs": 100, "ax": 7, "ap": 114.128, "as": 160, "c": 0,
               "i": [604], "t": 1536036818784, "q": 50385480, "z": 3}  # fmt: skip
OPTION_QUOTE = {"ev": "Q", "sym": "O:SPY241220P00720000", "bx": 302, "ax": 302, "bp": 9.71, "ap": 9.81, "bs": 17,
                "as": 24, "t": 1644506128351, "q": 844090872}  # fmt: skip
STOCK_AGG = {"ev": "A", "sym": "SPCE", "v": 200, "av": 8642007, "op": 25.66, "vw": 25.3981, "o": 25.39, "c": 25.39,
             "h": 25.39, "l": 25.39, "a": 25.3714, "z": 50, "s": 1610144868000, "e": 1610144869000}  # fmt: skip
STOCK_AGG_ATTRS = {"symbol": "SPCE", "volume": 200, "accumulated_volume": 8642007, "official_open_price": 25.66,
                   "vwap": 25.3981, "open": 25.39, "close": 25.39, "high": 25.39, "low": 25.39,
                   "aggregate_vwap": 25.3714, "average_size": 50, "start_timestamp": 1610144868000,
                   "end_timestamp": 1610144869000}  # fmt: skip
# Indices aggregates carry only ev, sym, op, o, c, h, l, s, e (docs/protocol.md §4.3).
INDEX_AGG = {"ev": "A", "sym": "I:SPX", "op": 3985.67, "o": 3988.11, "c": 3988.5, "h": 3988.9, "l": 3987.2,
             "s": 1678220098000, "e": 1678220099000}  # fmt: skip
INDEX_AGG_ATTRS = {"symbol": "I:SPX", "official_open_price": 3985.67, "open": 3988.11, "close": 3988.5,
                   "high": 3988.9, "low": 3987.2, "start_timestamp": 1678220098000,
                   "end_timestamp": 1678220099000}  # fmt: skip
FOREX_AGG = {"ev": "CA", "pair": "USD/EUR", "o": 0.8687, "c": 0.86889, "h": 0.86889, "l": 0.8686, "v": 20,
             "s": 1539145740000}  # fmt: skip
FOREX_AGG_ATTRS = {"pair": "USD/EUR", "open": 0.8687, "close": 0.86889, "high": 0.86889, "low": 0.8686, "volume": 20,
                   "start_timestamp": 1539145740000}  # fmt: skip
CRYPTO_AGG = {"ev": "XA", "pair": "BCD-USD", "v": 951.6112, "vw": 0.7756, "z": 73, "o": 0.772, "c": 0.784, "h": 0.784,
              "l": 0.771, "s": 1610463240000, "e": 1610463300000}  # fmt: skip
CRYPTO_AGG_ATTRS = {"pair": "BCD-USD", "volume": 951.6112, "vwap": 0.7756, "avg_trade_size": 73, "open": 0.772,
                    "close": 0.784, "high": 0.784, "low": 0.771, "start_timestamp": 1610463240000,
                    "end_timestamp": 1610463300000}  # fmt: skip
# Futures have no SPEC examples; these follow the field tables of docs/protocol.md §4.3 (client-W from_dict).
FUTURES_TRADE = {"ev": "T", "sym": "ESZ4", "p": 5912.25, "s": 2, "t": 1731340800123, "q": 1234567}
FUTURES_QUOTE = {"ev": "Q", "sym": "ESZ4", "bp": 5912.0, "bs": 12, "bt": 1731340800100, "ap": 5912.25, "as": 9,
                 "at": 1731340800101, "t": 1731340800123}  # fmt: skip
FUTURES_AGG = {"ev": "A", "sym": "ESZ4", "v": 153, "dv": 904575.25, "o": 5912.0, "c": 5912.5, "h": 5913.0,
               "l": 5911.75, "n": 41, "s": 1731340800000, "e": 1731340801000}  # fmt: skip
FUTURES_AGG_ATTRS = {"symbol": "ESZ4", "volume": 153, "total_value": 904575.25, "open": 5912.0, "close": 5912.5,
                     "high": 5913.0, "low": 5911.75, "transactions": 41, "start_timestamp": 1731340800000,
                     "end_timestamp": 1731340801000}  # fmt: skip

EXAMPLES: list[Example] = [
    Example("stocks-trade", EquityTrade, STOCK_TRADE,
            {"symbol": "MSFT", "exchange": 4, "id": "12345", "tape": 3, "price": 114.125, "size": 100,
             "conditions": [0, 12], "timestamp": 1536036818784, "sequence_number": 3681328}),
    Example("options-trade", EquityTrade, OPTION_TRADE,
            {"symbol": "O:AMC210827C00037000", "exchange": 65, "price": 1.54, "size": 1, "conditions": [233],
             "timestamp": 1629820676333, "sequence_number": 651921857}),
    Example("stocks-trade-trf-fractional", EquityTrade,
            {"ev": "T", "sym": "AAPL", "x": 4, "i": "52983525034825", "z": 3, "p": 189.2, "s": 0, "ds": "0.5",
             "c": [37], "t": 1678220098130, "q": 7, "trfi": 202, "trft": 1678220098129},
            {"symbol": "AAPL", "exchange": 4, "id": "52983525034825", "tape": 3, "price": 189.2, "size": 0,
             "fractional_shares": "0.5", "conditions": [37], "timestamp": 1678220098130, "sequence_number": 7,
             "trf_id": 202, "trf_timestamp": 1678220098129}),
    Example("stocks-quote", EquityQuote, STOCK_QUOTE,
            {"symbol": "MSFT", "bid_exchange_id": 4, "bid_price": 114.125, "bid_size": 100, "ask_exchange_id": 7,
             "ask_price": 114.128, "ask_size": 160, "condition": 0, "indicators": [604], "timestamp": 1536036818784,
             "sequence_number": 50385480, "tape": 3}),
    Example("options-quote", EquityQuote, OPTION_QUOTE,
            {"symbol": "O:SPY241220P00720000", "bid_exchange_id": 302, "ask_exchange_id": 302, "bid_price": 9.71,
             "ask_price": 9.81, "bid_size": 17, "ask_size": 24, "timestamp": 1644506128351,
             "sequence_number": 844090872}),
    Example("stocks-second-agg", EquityAgg, STOCK_AGG, STOCK_AGG_ATTRS),
    Example("stocks-minute-agg", EquityAgg, _agg("AM", STOCK_AGG), STOCK_AGG_ATTRS),
    Example("stocks-agg-otc-fractional", EquityAgg,
            {"ev": "AM", "sym": "GRLF", "v": 1000, "otc": True, "dv": "1000.5", "dav": "1500.25", "s": 1, "e": 2},
            {"symbol": "GRLF", "volume": 1000, "otc": True, "fractional_volume": "1000.5",
             "fractional_accumulated_volume": "1500.25", "start_timestamp": 1, "end_timestamp": 2}),
    Example("indices-second-agg", EquityAgg, INDEX_AGG, INDEX_AGG_ATTRS),
    Example("indices-minute-agg", EquityAgg, _agg("AM", INDEX_AGG), INDEX_AGG_ATTRS),
    Example("luld", LimitUpLimitDown,
            {"ev": "LULD", "T": "MSFT", "h": 218.96, "l": 198.11, "i": [21], "z": 3, "t": 1601316752683746,
             "q": 290317},
            {"symbol": "MSFT", "high_price": 218.96, "low_price": 198.11, "indicators": [21], "tape": 3,
             "timestamp": 1601316752683746, "sequence_number": 290317}),
    Example("noi", Imbalance,
            {"ev": "NOI", "T": "NTEST.Q", "t": 1601318039223013600, "at": 930, "a": "M", "i": 44, "x": 10, "o": 480,
             "p": 440, "b": 25.03},
            {"symbol": "NTEST.Q", "time_stamp": 1601318039223013600, "auction_time": 930, "auction_type": "M",
             "symbol_sequence": 44, "exchange_id": 10, "imbalance_quantity": 480, "paired_quantity": 440,
             "book_clearing_price": 25.03}),
    Example("fmv-stock", FairMarketValue, {"ev": "FMV", "fmv": 189.22, "sym": "AAPL", "t": 1678220098130},
            {"fmv": 189.22, "ticker": "AAPL", "timestamp": 1678220098130}),
    Example("fmv-option", FairMarketValue,
            {"ev": "FMV", "fmv": 7.2, "sym": "O:TSLA210903C00700000", "t": 1401715883806000000},
            {"fmv": 7.2, "ticker": "O:TSLA210903C00700000", "timestamp": 1401715883806000000}),
    Example("fmv-crypto", FairMarketValue, {"ev": "FMV", "fmv": 33021.9, "sym": "X:BTC-USD", "t": 1610462007425},
            {"fmv": 33021.9, "ticker": "X:BTC-USD", "timestamp": 1610462007425}),
    Example("fmv-forex", FairMarketValue, {"ev": "FMV", "fmv": 1.0631, "sym": "C:EURUSD", "t": 1678220098130},
            {"fmv": 1.0631, "ticker": "C:EURUSD", "timestamp": 1678220098130}),
    Example("launchpad-value", LaunchpadValue, {"ev": "LV", "val": 189.22, "sym": "AAPL", "t": 1678220098130},
            {"value": 189.22, "symbol": "AAPL", "timestamp": 1678220098130}),
    Example("index-value", IndexValue, {"ev": "V", "val": 3988.5, "T": "I:SPX", "t": 1678220098130},
            {"value": 3988.5, "ticker": "I:SPX", "timestamp": 1678220098130}),
    Example("forex-quote", ForexQuote,
            {"ev": "C", "p": "USD/CNH", "x": "44", "a": 6.83366, "b": 6.83363, "t": 1536036818784},
            {"pair": "USD/CNH", "exchange_id": "44", "ask_price": 6.83366, "bid_price": 6.83363,
             "timestamp": 1536036818784}),
    Example("forex-minute-agg", CurrencyAgg, FOREX_AGG, FOREX_AGG_ATTRS),
    Example("forex-second-agg", CurrencyAgg, _agg("CAS", FOREX_AGG), FOREX_AGG_ATTRS),
    Example("crypto-minute-agg", CurrencyAgg, CRYPTO_AGG, CRYPTO_AGG_ATTRS),
    Example("crypto-second-agg", CurrencyAgg, _agg("XAS", CRYPTO_AGG), CRYPTO_AGG_ATTRS),
    Example("crypto-trade", CryptoTrade,
            {"ev": "XT", "pair": "BTC-USD", "p": 33021.9, "t": 1610462007425, "s": 0.01616617, "c": [2],
             "i": 14272084, "x": 3, "r": 1610462007576},
            {"pair": "BTC-USD", "price": 33021.9, "timestamp": 1610462007425, "size": 0.01616617, "conditions": [2],
             "id": 14272084, "exchange": 3, "received_timestamp": 1610462007576}),
    Example("crypto-quote", CryptoQuote,
            {"ev": "XQ", "pair": "BTC-USD", "bp": 33052.79, "bs": 0.48, "ap": 33073.19, "as": 0.601,
             "t": 1610462411115, "x": 1, "r": 1610462411128},
            {"pair": "BTC-USD", "bid_price": 33052.79, "bid_size": 0.48, "ask_price": 33073.19, "ask_size": 0.601,
             "timestamp": 1610462411115, "exchange_id": 1, "received_timestamp": 1610462411128}),
    Example("crypto-level2", Level2Book,
            {"ev": "XL2", "pair": "BTC-USD", "t": 1610462411115, "r": 1610462411128, "x": 1,
             "b": [[33712.71, 0.18635], [33712.7, 0.134]], "a": [[33718.23, 3.5527483], [33718.24, 0.1]]},
            {"pair": "BTC-USD", "timestamp": 1610462411115, "received_timestamp": 1610462411128, "exchange_id": 1,
             "bid_prices": [[33712.71, 0.18635], [33712.7, 0.134]],
             "ask_prices": [[33718.23, 3.5527483], [33718.24, 0.1]]}),
    Example("futures-trade", FuturesTrade, FUTURES_TRADE,
            {"symbol": "ESZ4", "price": 5912.25, "size": 2, "timestamp": 1731340800123, "sequence_number": 1234567}),
    Example("futures-quote", FuturesQuote, FUTURES_QUOTE,
            {"symbol": "ESZ4", "bid_price": 5912.0, "bid_size": 12, "bid_timestamp": 1731340800100,
             "ask_price": 5912.25, "ask_size": 9, "ask_timestamp": 1731340800101, "sip_timestamp": 1731340800123}),
    Example("futures-second-agg", FuturesAgg, FUTURES_AGG, FUTURES_AGG_ATTRS),
    Example("futures-minute-agg", FuturesAgg, _agg("AM", FUTURES_AGG), FUTURES_AGG_ATTRS),
]  # fmt: skip

CASES = [
    pytest.param(example, market, id=f"{example.id}@{market}") for example in EXAMPLES for market in example.markets()
]


def _decode_one(
    market: str,
    wire: Wire,
    loads: Callable[[Any], Any] = json.loads,
    *,
    connection: str = "",
    received_at_ns: int = 0,
) -> Event:
    events = Decoder(market, connection=connection, loads=loads).decode(json.dumps([wire]), received_at_ns)
    assert len(events) == 1
    return events[0]


def _payload_fields(cls: type[Event]) -> list[str]:
    return [f.name for f in attrs.fields(cls) if f.name not in ("received_at_ns", "connection")]


# --------------------------------------------------------------------------------------------
# Table sanity: every example is used, every (market, ev) has an example


def test_every_example_applies_to_at_least_one_market() -> None:
    assert all(example.markets() for example in EXAMPLES)


def test_every_market_event_pair_has_an_example() -> None:
    covered = {(market, example.wire["ev"]) for example in EXAMPLES for market in example.markets()}
    expected = {(market, ev) for market, table in EXPECTED_CLASS.items() for ev in table}
    assert expected - covered == set()


def test_every_event_class_has_an_example() -> None:
    assert {example.cls for example in EXAMPLES} == set(EVENT_CLASSES)


def test_examples_name_only_attributes_of_their_class() -> None:
    for example in EXAMPLES:
        assert set(example.attributes) <= set(_payload_fields(example.cls)), example.id


# --------------------------------------------------------------------------------------------
# Decoding the examples


@pytest.mark.parametrize("loads_name", sorted(LOADS))
@pytest.mark.parametrize(("example", "market"), CASES)
def test_example_decodes_to_its_class_with_exact_values(example: Example, market: str, loads_name: str) -> None:
    event = _decode_one(market, example.wire, LOADS[loads_name])

    assert type(event) is example.cls
    expected: dict[str, Any] = dict.fromkeys(_payload_fields(example.cls))
    expected.update(example.attributes, event_type=example.wire["ev"])
    actual = {name: getattr(event, name) for name in expected}
    assert actual == expected
    # Values are not coerced: an int stays an int, a float a float, a string a string.
    assert {k: type(v) for k, v in actual.items()} == {k: type(v) for k, v in expected.items()}


@pytest.mark.parametrize(("example", "market"), CASES)
def test_example_attributes_equal_the_official_clients(example: Example, market: str) -> None:
    ours = _decode_one(market, example.wire)
    theirs = getattr(official, example.cls.__name__).from_dict(dict(example.wire))

    for field in dataclasses.fields(theirs):
        assert getattr(ours, field.name) == getattr(theirs, field.name), field.name


@pytest.mark.parametrize(
    ("market", "wire", "cls"),
    [
        pytest.param("stocks", FUTURES_TRADE, EquityTrade, id="T-stocks"),
        pytest.param("options", FUTURES_TRADE, EquityTrade, id="T-options"),
        *[pytest.param(m, FUTURES_TRADE, FuturesTrade, id=f"T-{m}") for m in FUTURES_MARKETS],
        pytest.param("stocks", FUTURES_QUOTE, EquityQuote, id="Q-stocks"),
        pytest.param("futures/cme", FUTURES_QUOTE, FuturesQuote, id="Q-futures/cme"),
        pytest.param("stocks", FUTURES_AGG, EquityAgg, id="A-stocks"),
        pytest.param("indices", FUTURES_AGG, EquityAgg, id="A-indices"),
        pytest.param("futures/nymex", FUTURES_AGG, FuturesAgg, id="A-futures/nymex"),
        pytest.param("crypto", _agg("AM", STOCK_AGG), EquityAgg, id="AM-crypto-launchpad"),
        pytest.param("forex", _agg("AM", STOCK_AGG), EquityAgg, id="AM-forex-launchpad"),
        pytest.param("futures/comex", _agg("AM", STOCK_AGG), FuturesAgg, id="AM-futures/comex"),
    ],
)
def test_same_ev_decodes_to_the_class_of_the_market(market: str, wire: Wire, cls: type[MarketEvent]) -> None:
    assert type(_decode_one(market, wire)) is cls


def test_futures_trade_keeps_futures_meaning_of_fields() -> None:
    event = _decode_one("futures", FUTURES_TRADE)

    assert isinstance(event, FuturesTrade)
    assert (event.symbol, event.price, event.size, event.sequence_number) == ("ESZ4", 5912.25, 2, 1234567)


def test_futures_agg_reads_dv_as_total_value_where_equity_agg_reads_fractional_volume() -> None:
    futures = _decode_one("futures", FUTURES_AGG)
    stocks = _decode_one("stocks", FUTURES_AGG)

    assert isinstance(futures, FuturesAgg)
    assert isinstance(stocks, EquityAgg)
    assert futures.total_value == 904575.25
    assert stocks.fractional_volume == 904575.25


@pytest.mark.parametrize(("market", "ev"), [("stocks", "XT"), ("crypto", "T"), ("indices", "T"), ("forex", "Q"),
                                            ("options", "LULD"), ("futures", "FMV"), ("indices", "LV")])  # fmt: skip
def test_ev_the_market_does_not_have_decodes_to_unknown_event(market: str, ev: str) -> None:
    wire = {"ev": ev, "sym": "X"}
    event = _decode_one(market, wire)

    assert type(event) is UnknownEvent
    assert event.event_type == ev
    assert event.data == wire


@pytest.mark.parametrize(("example", "market"), CASES)
def test_decoder_stamps_received_at_ns_and_connection(example: Example, market: str) -> None:
    event = _decode_one(market, example.wire, connection="stocks-2", received_at_ns=1_700_000_000_123_456_789)

    assert event.received_at_ns == 1_700_000_000_123_456_789
    assert event.connection == "stocks-2"


def test_every_event_of_a_frame_gets_the_frames_stamp() -> None:
    decoder = Decoder("stocks", connection="c1")
    events = decoder.decode(json.dumps([STOCK_TRADE, STOCK_QUOTE, {"ev": "status", "status": "success",
                                                                   "message": "subscribed to: T.MSFT"}]),
                            received_at_ns=42)  # fmt: skip

    assert [(type(e), e.received_at_ns, e.connection) for e in events] == [
        (EquityTrade, 42, "c1"), (EquityQuote, 42, "c1"), (StatusMessage, 42, "c1"),
    ]  # fmt: skip


def test_missing_fields_are_none() -> None:
    event = _decode_one("stocks", {"ev": "T", "sym": "AAPL"})

    assert isinstance(event, EquityTrade)
    assert event.symbol == "AAPL"
    assert all(
        getattr(event, name) is None for name in _payload_fields(EquityTrade) if name not in ("symbol", "event_type")
    )


def test_unknown_keys_are_ignored_by_typed_events() -> None:
    event = _decode_one("stocks", {**STOCK_TRADE, "zz": 1, "new_field": [1, 2]})

    assert event == _decode_one("stocks", STOCK_TRADE)


# --------------------------------------------------------------------------------------------
# to_wire


@pytest.mark.parametrize(("example", "market"), CASES)
def test_to_wire_returns_the_wire_object(example: Example, market: str) -> None:
    event = _decode_one(market, example.wire)

    assert isinstance(event, MarketEvent)
    assert to_wire(event) == example.wire


@pytest.mark.parametrize(("example", "market"), CASES)
def test_to_wire_round_trips_through_the_decoder(example: Example, market: str) -> None:
    event = _decode_one(market, example.wire, connection="c", received_at_ns=9)
    assert isinstance(event, MarketEvent)

    again = _decode_one(market, json.loads(json.dumps(to_wire(event))), connection="c", received_at_ns=9)

    assert again == event


def test_to_wire_omits_none_fields() -> None:
    assert to_wire(EquityTrade(event_type="T", symbol="AAPL", price=1.5)) == {"ev": "T", "sym": "AAPL", "p": 1.5}


def test_to_wire_keeps_falsy_values_that_are_not_none() -> None:
    event = EquityAgg(event_type="A", symbol="", volume=0, otc=False)

    assert to_wire(event) == {"ev": "A", "sym": "", "v": 0, "otc": False}


def test_decoded_event_equals_the_one_built_by_the_constructor() -> None:
    built = EquityTrade(event_type="T", symbol="MSFT", exchange=4, id="12345", tape=3, price=114.125, size=100,
                        conditions=[0, 12], timestamp=1536036818784, sequence_number=3681328, connection="c",
                        received_at_ns=5)  # fmt: skip

    assert _decode_one("stocks", STOCK_TRADE, connection="c", received_at_ns=5) == built


# --------------------------------------------------------------------------------------------
# Class shape: frozen, slotted, names of the official client


ALL_EVENT_CLASSES = [*EVENT_CLASSES, StatusMessage, UnknownEvent, RawFrame]


@pytest.mark.parametrize("cls", ALL_EVENT_CLASSES, ids=lambda c: c.__name__)
def test_events_are_frozen(cls: type[Event]) -> None:
    event = cls()

    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.connection = "other"  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        del event.received_at_ns  # type: ignore[misc]
    assert event.connection == ""


@pytest.mark.parametrize(("example", "market"), CASES[:1] + [c for c in CASES if c.values[1] == "futures"])
def test_decoded_events_are_frozen_too(example: Example, market: str) -> None:
    event = _decode_one(market, example.wire)

    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.event_type = "X"  # type: ignore[misc]


@pytest.mark.parametrize("cls", ALL_EVENT_CLASSES, ids=lambda c: c.__name__)
def test_events_are_slotted(cls: type[Event]) -> None:
    event = cls()

    assert attrs.has(cls)
    assert "__slots__" in cls.__dict__
    assert not hasattr(event, "__dict__")


@pytest.mark.parametrize("cls", ALL_EVENT_CLASSES, ids=lambda c: c.__name__)
def test_events_are_keyword_only(cls: type[Event]) -> None:
    assert all(field.kw_only for field in attrs.fields(cls))
    with pytest.raises(TypeError):
        cls(1)  # type: ignore[call-arg]


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda c: c.__name__)
def test_official_client_fields_are_a_subset_of_ours(cls: type[MarketEvent]) -> None:
    theirs = getattr(official, cls.__name__)
    assert dataclasses.is_dataclass(theirs)

    official_fields = {field.name for field in dataclasses.fields(theirs)}

    assert official_fields <= {field.name for field in attrs.fields(cls)}


def test_there_are_sixteen_market_event_classes() -> None:
    assert len(EVENT_CLASSES) == 16
    assert len(set(EVENT_CLASSES)) == 16
    assert all(issubclass(cls, MarketEvent) for cls in EVENT_CLASSES)


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda c: c.__name__)
def test_wire_table_maps_distinct_keys_to_every_payload_attribute(cls: type[MarketEvent]) -> None:
    keys = [key for key, _ in cls.WIRE]
    attributes = [attr for _, attr in cls.WIRE]

    assert len(set(keys)) == len(keys)
    assert sorted(attributes) == sorted(_payload_fields(cls))
    assert ("ev", "event_type") in cls.WIRE


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda c: c.__name__)
def test_every_wire_key_decodes_into_its_attribute(cls: type[MarketEvent]) -> None:
    # A distinct marker per key proves each key lands in the attribute WIRE names (and no other).
    wire: Wire = {key: f"<{key}>" for key, _ in cls.WIRE}
    ev = next(e for table in EXPECTED_CLASS.values() for e, c in table.items() if c is cls)
    market = next(m for m, table in EXPECTED_CLASS.items() if table.get(ev) is cls)
    wire["ev"] = ev

    event = _decode_one(market, wire)

    official_cls = getattr(official, cls.__name__)
    theirs = official_cls.from_dict(wire)
    for field in dataclasses.fields(theirs):
        assert getattr(event, field.name) == getattr(theirs, field.name), field.name


def test_market_table_matches_protocol_md() -> None:
    actual = {market.value: dict(table) for market, table in MARKET_EVENTS.items()}

    assert actual == EXPECTED_CLASS


def test_market_table_matches_the_official_client() -> None:
    theirs = {market.value: {ev: cls.__name__ for ev, cls in table.items()}
              for market, table in OFFICIAL_MARKET_EVENT_MAP.items()}  # fmt: skip
    ours = {market.value: {ev: cls.__name__ for ev, cls in table.items()} for market, table in MARKET_EVENTS.items()}

    assert ours == theirs
    assert {m.value for m in Market} == set(theirs)


# --------------------------------------------------------------------------------------------
# Non-market events


def test_status_message_defaults() -> None:
    status = StatusMessage()

    assert (status.event_type, status.status, status.message, status.channels, status.dropped) == (
        "status", "", "", (), 0,
    )  # fmt: skip
    assert status.from_server is False
    assert (status.gap_start_ns, status.gap_end_ns, status.error, status.state) == (None, None, None, None)


def test_raw_frame_defaults_to_empty_bytes() -> None:
    frame = RawFrame(data=b"[]", received_at_ns=3)

    assert (frame.event_type, frame.data, frame.received_at_ns) == ("raw", b"[]", 3)
    assert RawFrame().data == b""


def test_unknown_event_keeps_data_untouched() -> None:
    data = {"ev": "ZZ", "nested": {"a": [1, 2]}}
    event = UnknownEvent(event_type="ZZ", data=data)

    assert event.data is data
    assert isinstance(event, Event)
    assert not isinstance(event, MarketEvent)
