"""The conversion table (docs/rest.md), checked field by field against the official REST models.

The rows are the JSON MockMassiveREST serves over HTTP; the official ``massive`` models are built
from it with their own ``from_dict``; the converted event must carry every mapped field.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
from massive.rest.models import Agg, Quote, TickerSnapshot, Trade

from massive_rt.models import LIVE, REST, CryptoTrade, CurrencyAgg, EquityAgg, EquityQuote, EquityTrade, ForexQuote
from massive_rt.protocol import Decoder
from massive_rt.rest import agg_event, quote_event, rest_ticker, snapshot_state, trade_event
from massive_rt.testing import MockMassiveREST

T0 = 1_700_000_000_000
TRADE = {"ev": "T", "sym": "AAPL", "x": 4, "i": "71", "z": 3, "p": 190.25, "s": 100, "c": [12, 37], "t": T0 + 5,
         "q": 9001, "trfi": 202, "trft": T0 + 4, "ds": "100.5"}  # fmt: skip
QUOTE = {"ev": "Q", "sym": "AAPL", "bx": 11, "bp": 190.2, "bs": 3, "ax": 12, "ap": 190.3, "as": 4, "c": 1,
         "i": [604], "t": T0 + 6, "z": 3, "q": 9002}  # fmt: skip
MINUTE = {"ev": "AM", "sym": "AAPL", "v": 1200, "av": 50_000, "vw": 190.1, "o": 190.0, "c": 190.2, "h": 190.4,
          "l": 189.9, "s": T0, "e": T0 + 60_000, "otc": False}  # fmt: skip

# REST row key → (event attribute, converts ns → ms)
TRADE_TABLE = {
    "conditions": ("conditions", False), "exchange": ("exchange", False), "id": ("id", False),
    "price": ("price", False), "sequence_number": ("sequence_number", False), "sip_timestamp": ("timestamp", True),
    "size": ("size", False), "tape": ("tape", False), "trf_id": ("trf_id", False),
    "trf_timestamp": ("trf_timestamp", True), "decimal_size": ("fractional_shares", False),
}  # fmt: skip
QUOTE_TABLE = {
    "ask_exchange": ("ask_exchange_id", False), "ask_price": ("ask_price", False), "ask_size": ("ask_size", False),
    "bid_exchange": ("bid_exchange_id", False), "bid_price": ("bid_price", False), "bid_size": ("bid_size", False),
    "indicators": ("indicators", False), "sequence_number": ("sequence_number", False),
    "sip_timestamp": ("timestamp", True), "tape": ("tape", False),
}  # fmt: skip
AGG_TABLE = {"o": "open", "h": "high", "l": "low", "c": "close", "v": "volume", "vw": "vwap", "t": "start_timestamp",
             "otc": "otc"}  # fmt: skip


def served(mock: MockMassiveREST, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{mock.url}{path}{'&' if '?' in path else '?'}apiKey=test-key", timeout=10) as r:
        body: dict[str, Any] = json.loads(r.read())
    return body


@pytest.fixture
def mock() -> Any:
    with MockMassiveREST() as server:
        server.add_events([TRADE, QUOTE, MINUTE])
        server.add_events([{"ev": "XT", "pair": "BTC-USD", "x": 1, "i": "abc", "p": 43000.5, "s": 0.25, "c": [1],
                            "t": T0 + 7}], market="crypto")  # fmt: skip
        server.add_events([{"ev": "XA", "pair": "BTC-USD", "o": 1.0, "c": 2.0, "h": 3.0, "l": 0.5, "v": 9.5,
                            "vw": 1.5, "s": T0, "e": T0 + 60_000}], market="crypto")  # fmt: skip
        server.add_events([{"ev": "C", "p": "EUR/USD", "x": 48, "a": 1.0901, "b": 1.0899, "t": T0 + 8}], market="forex")
        yield server


def test_trade_row_converts_field_by_field_to_the_stream_trade(mock: MockMassiveREST) -> None:
    row = served(mock, "/v3/trades/AAPL")["results"][0]
    event = trade_event(Trade.from_dict(row), "AAPL")
    assert isinstance(event, EquityTrade)
    assert event.event_type == "T"
    assert event.symbol == "AAPL"
    assert set(TRADE_TABLE) <= set(row)  # every mapped key was served, so the loop below checks them all
    for key, (attr, ns) in TRADE_TABLE.items():
        assert getattr(event, attr) == (row[key] // 1_000_000 if ns else row[key]), key
    assert event.origin == REST
    # and back to exactly what the stream carried
    assert (event.timestamp, event.sequence_number, event.trf_timestamp) == (TRADE["t"], TRADE["q"], TRADE["trft"])


def test_quote_row_converts_field_by_field_to_the_stream_quote(mock: MockMassiveREST) -> None:
    row = served(mock, "/v3/quotes/AAPL")["results"][0]
    event = quote_event(Quote.from_dict(row), "AAPL")
    assert isinstance(event, EquityQuote)
    assert event.event_type == "Q"
    assert set(QUOTE_TABLE) <= set(row)
    for key, (attr, ns) in QUOTE_TABLE.items():
        assert getattr(event, attr) == (row[key] // 1_000_000 if ns else row[key]), key
    assert event.condition == row["conditions"][0] == QUOTE["c"]


def test_minute_bar_converts_field_by_field_to_the_stream_bar(mock: MockMassiveREST) -> None:
    row = served(mock, f"/v2/aggs/ticker/AAPL/range/1/minute/{T0}/{T0 + 60_000}")["results"][0]
    event = agg_event(Agg.from_dict(row), "AAPL", "minute")
    assert isinstance(event, EquityAgg)
    assert event.event_type == "AM"
    for key, attr in AGG_TABLE.items():
        assert getattr(event, attr) == row[key], key
    assert event.end_timestamp == MINUTE["e"]
    second = agg_event(Agg.from_dict(row), "AAPL", "second")
    assert second.event_type == "A"
    assert second.end_timestamp == T0 + 1_000


def test_crypto_and_forex_rows_convert_to_their_stream_classes(mock: MockMassiveREST) -> None:
    assert rest_ticker("BTC-USD", "crypto") == "X:BTCUSD"
    assert rest_ticker("EUR/USD", "forex") == "C:EURUSD"
    trade = trade_event(Trade.from_dict(served(mock, "/v3/trades/X:BTCUSD")["results"][0]), "BTC-USD", "crypto")
    assert isinstance(trade, CryptoTrade)
    assert (trade.event_type, trade.pair, trade.price, trade.size, trade.timestamp) == ("XT", "BTC-USD", 43000.5, 0.25,
                                                                                         T0 + 7)  # fmt: skip
    quote = quote_event(Quote.from_dict(served(mock, "/v3/quotes/C:EURUSD")["results"][0]), "EUR/USD", "forex")
    assert isinstance(quote, ForexQuote)
    assert (quote.event_type, quote.pair, quote.ask_price, quote.bid_price, quote.exchange_id, quote.timestamp) == (
        "C", "EUR/USD", 1.0901, 1.0899, 48, T0 + 8)  # fmt: skip
    row = served(mock, f"/v2/aggs/ticker/X:BTCUSD/range/1/minute/{T0}/{T0}")["results"][0]
    bar = agg_event(Agg.from_dict(row), "BTC-USD", "minute", "crypto")
    assert isinstance(bar, CurrencyAgg)
    assert (bar.event_type, bar.pair, bar.open, bar.volume) == ("XA", "BTC-USD", 1.0, 9.5)


def test_snapshot_converts_last_trade_quote_and_minute_bar(mock: MockMassiveREST) -> None:
    body = served(mock, "/v2/snapshot/locale/us/markets/stocks/tickers/AAPL")
    state = snapshot_state(TickerSnapshot.from_dict(body["ticker"]), "AAPL")
    assert state.trade is not None
    assert state.trade.price == TRADE["p"]
    assert state.trade.timestamp == TRADE["t"]
    assert state.quote is not None
    assert state.quote.ask_price == QUOTE["ap"]
    assert state.quote.bid_size == QUOTE["bs"]
    assert state.minute_bar is not None
    assert state.minute_bar.accumulated_volume == MINUTE["av"]
    assert all(e.origin == REST for e in (state.trade, state.quote, state.minute_bar))


def test_live_events_read_origin_live_and_equal_their_rest_twin() -> None:
    live = Decoder("stocks").decode(json.dumps([TRADE]).encode())[0]
    assert live.origin == LIVE
    row = {
        "conditions": TRADE["c"], "exchange": 4, "id": "71", "price": 190.25, "size": 100, "tape": 3,
        "sequence_number": 9001, "sip_timestamp": (T0 + 5) * 1_000_000, "trf_id": 202,
        "trf_timestamp": (T0 + 4) * 1_000_000, "decimal_size": "100.5",
    }  # fmt: skip
    backfilled = trade_event(Trade.from_dict(row), "AAPL")
    assert backfilled.origin == REST
    assert backfilled == live  # origin is not compared: a seam can be de-duplicated by equality


def test_trade_of_a_market_without_rest_trades_is_a_typed_error() -> None:
    with pytest.raises(ValueError, match="market='forex' has no REST trades"):
        trade_event(Trade.from_dict({"price": 1.0}), "EUR/USD", "forex")
