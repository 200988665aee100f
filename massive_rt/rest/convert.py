"""REST rows → massive_rt's event classes: the conversion table, pure functions, no I/O.

Each converter takes one row as the official ``massive`` client deserializes it (``Trade``,
``Quote``, ``Agg``, ``LastTrade``, ``LastQuote``, ``MinuteSnapshot`` — read by attribute, so
any object with those attribute names works) and returns the event class the WebSocket stream
delivers for the same data, marked :data:`~massive_rt.models.REST` (``event.origin == "rest"``).
The full table is in docs/rest.md and checked field by field in tests/rest/test_convert.py.

Timestamps: REST trades and quotes carry nanoseconds (``sip_timestamp``); the stream carries
milliseconds, so ``timestamp = sip_timestamp // 1_000_000`` (floor). Aggregates are in
milliseconds on both sides. Symbols: the caller passes the stream's symbol (``"AAPL"``,
``"BTC-USD"``, ``"EUR/USD"``); :func:`rest_ticker` gives the REST ticker for it.
"""

from __future__ import annotations

from typing import Any

import attrs

from ..enums import Market
from ..errors import ConfigurationError
from ..models import (
    REST,
    CryptoTrade,
    CurrencyAgg,
    EquityAgg,
    EquityQuote,
    EquityTrade,
    ForexQuote,
    with_origin,
)

__all__ = [
    "AGG_EVENT_TYPES",
    "NS_PER_MS",
    "SnapshotState",
    "agg_event",
    "ns_to_ms",
    "quote_event",
    "rest_ticker",
    "snapshot_state",
    "trade_event",
]

NS_PER_MS = 1_000_000

#: (market, timespan) → the stream's ``ev`` of that bar.
AGG_EVENT_TYPES: dict[tuple[Market, str], str] = {
    (Market.STOCKS, "minute"): "AM", (Market.STOCKS, "second"): "A",
    (Market.OPTIONS, "minute"): "AM", (Market.OPTIONS, "second"): "A",
    (Market.INDICES, "minute"): "AM", (Market.INDICES, "second"): "A",
    (Market.CRYPTO, "minute"): "XA", (Market.CRYPTO, "second"): "XAS",
    (Market.FOREX, "minute"): "CA", (Market.FOREX, "second"): "CAS",
}  # fmt: skip

_SPAN_MS = {"minute": 60_000, "second": 1_000}


def ns_to_ms(value: int | None) -> int | None:
    """Nanoseconds → milliseconds (floor), ``None`` stays ``None``."""
    return None if value is None else value // NS_PER_MS


def rest_ticker(symbol: str, market: Market | str) -> str:
    """The REST ticker of a stream symbol: ``"BTC-USD"`` → ``"X:BTCUSD"``, ``"EUR/USD"`` → ``"C:EURUSD"``.

    Stocks, options and indices use the same ticker on both sides (``"O:..."``, ``"I:..."``
    included). A symbol that already has the REST prefix is returned as is.
    """
    value = Market.coerce(market, "market")
    if value is Market.CRYPTO and not symbol.startswith("X:"):
        return "X:" + symbol.replace("-", "").replace("/", "")
    if value is Market.FOREX and not symbol.startswith("C:"):
        return "C:" + symbol.replace("/", "").replace("-", "")
    return symbol


def trade_event(row: Any, symbol: str, market: Market | str = Market.STOCKS) -> EquityTrade | CryptoTrade:
    """A REST trade row (``/v3/trades/{ticker}``) → :class:`EquityTrade` (``T``) or, for crypto,
    :class:`CryptoTrade` (``XT``).

    Raises:
        ConfigurationError: a market whose trades the stream does not model this way (forex).
    """
    value = Market.coerce(market, "market")
    if value is Market.CRYPTO:
        return with_origin(
            CryptoTrade(
                event_type="XT", pair=symbol, exchange=row.exchange, id=row.id, price=row.price, size=row.size,
                conditions=row.conditions, timestamp=ns_to_ms(_trade_ns(row)),
            ),
            REST,
        )  # fmt: skip
    if value not in (Market.STOCKS, Market.OPTIONS):
        raise ConfigurationError(f"market={value.value!r} has no REST trades to convert", field="market")
    return with_origin(
        EquityTrade(
            event_type="T", symbol=symbol, exchange=row.exchange, id=row.id, tape=row.tape, price=row.price,
            size=row.size, fractional_shares=getattr(row, "decimal_size", None), conditions=row.conditions,
            timestamp=ns_to_ms(_trade_ns(row)), sequence_number=row.sequence_number, trf_id=row.trf_id,
            trf_timestamp=ns_to_ms(row.trf_timestamp),
        ),
        REST,
    )  # fmt: skip


def quote_event(row: Any, symbol: str, market: Market | str = Market.STOCKS) -> EquityQuote | ForexQuote:
    """A REST quote row (``/v3/quotes/{ticker}``) → :class:`EquityQuote` (``Q``) or, for forex,
    :class:`ForexQuote` (``C``).

    The stream's quote has one ``condition`` (``c``); REST has a list: the first is kept.

    Raises:
        ConfigurationError: a market without REST quotes (crypto).
    """
    value = Market.coerce(market, "market")
    if value is Market.FOREX:
        return with_origin(
            ForexQuote(
                event_type="C", pair=symbol, exchange_id=row.ask_exchange, ask_price=row.ask_price,
                bid_price=row.bid_price, timestamp=ns_to_ms(_trade_ns(row)),
            ),
            REST,
        )  # fmt: skip
    if value not in (Market.STOCKS, Market.OPTIONS):
        raise ConfigurationError(f"market={value.value!r} has no REST quotes to convert", field="market")
    conditions = row.conditions
    return with_origin(
        EquityQuote(
            event_type="Q", symbol=symbol, bid_exchange_id=row.bid_exchange, bid_price=row.bid_price,
            bid_size=row.bid_size, ask_exchange_id=row.ask_exchange, ask_price=row.ask_price, ask_size=row.ask_size,
            condition=conditions[0] if conditions else None, indicators=row.indicators,
            timestamp=ns_to_ms(_trade_ns(row)), tape=row.tape, sequence_number=row.sequence_number,
            trf_timestamp=ns_to_ms(row.trf_timestamp),
        ),
        REST,
    )  # fmt: skip


def agg_event(
    row: Any, symbol: str, timespan: str = "minute", market: Market | str = Market.STOCKS
) -> EquityAgg | CurrencyAgg:
    """A REST bar (``/v2/aggs/ticker/{ticker}/range/1/{timespan}/...``) → :class:`EquityAgg`
    (``AM``/``A``) or, for crypto and forex, :class:`CurrencyAgg` (``XA``/``XAS``, ``CA``/``CAS``).

    ``start_timestamp`` is the bar's ``t``; ``end_timestamp`` is ``t`` plus the span (the stream's
    convention). REST bars have no accumulated volume, official open or average size: ``None``.

    Raises:
        ConfigurationError: an unknown timespan or a market without bars.
    """
    value = Market.coerce(market, "market")
    ev = AGG_EVENT_TYPES.get((value, timespan))
    if ev is None:
        raise ConfigurationError(
            f"no stream bar for market={value.value!r}, timespan={timespan!r} (minute or second)", field="timespan"
        )
    start = row.timestamp
    end = None if start is None else start + _SPAN_MS[timespan]
    if value in (Market.CRYPTO, Market.FOREX):
        return with_origin(
            CurrencyAgg(
                event_type=ev, pair=symbol, open=row.open, close=row.close, high=row.high, low=row.low,
                volume=row.volume, vwap=row.vwap, start_timestamp=start, end_timestamp=end,
            ),
            REST,
        )  # fmt: skip
    return with_origin(
        EquityAgg(
            event_type=ev, symbol=symbol, volume=row.volume, vwap=row.vwap, open=row.open, close=row.close,
            high=row.high, low=row.low, start_timestamp=start, end_timestamp=end, otc=row.otc,
        ),
        REST,
    )  # fmt: skip


@attrs.frozen(kw_only=True)
class SnapshotState:
    """The current state of one ticker from a REST snapshot, as stream events (each marked ``"rest"``).

    Attributes:
        symbol: the stream symbol.
        trade: the last trade (``lastTrade``), if the snapshot had one.
        quote: the last quote (``lastQuote``; stocks only).
        minute_bar: the latest minute bar (``min``), ``accumulated_volume`` included.
        updated_ns: the snapshot's ``updated`` (nanoseconds), if any.
    """

    symbol: str
    trade: EquityTrade | CryptoTrade | None = None
    quote: EquityQuote | ForexQuote | None = None
    minute_bar: EquityAgg | CurrencyAgg | None = None
    updated_ns: int | None = None


def snapshot_state(snapshot: Any, symbol: str, market: Market | str = Market.STOCKS) -> SnapshotState:
    """A ticker snapshot (``TickerSnapshot`` of ``/v2/snapshot/...``) → :class:`SnapshotState`.

    Quotes are taken for stocks only: the official model reads forex and crypto ``lastQuote``
    keys it does not know as empty.
    """
    value = Market.coerce(market, "market")
    trade = quote = bar = None
    if snapshot.last_trade is not None and value in (Market.STOCKS, Market.OPTIONS, Market.CRYPTO):
        trade = trade_event(snapshot.last_trade, symbol, value)
    if snapshot.last_quote is not None and value in (Market.STOCKS, Market.OPTIONS):
        quote = quote_event(snapshot.last_quote, symbol, value)
    minute = snapshot.min
    if minute is not None and minute.timestamp is not None and (value, "minute") in AGG_EVENT_TYPES:
        bar = agg_event(minute, symbol, "minute", value)
        if isinstance(bar, EquityAgg):
            bar = with_origin(attrs.evolve(bar, accumulated_volume=minute.accumulated_volume), REST)
    return SnapshotState(symbol=symbol, trade=trade, quote=quote, minute_bar=bar, updated_ns=snapshot.updated)


def _trade_ns(row: Any) -> int | None:
    """The exchange-time stamp of a trade or quote row: SIP time, else participant time, else ``timestamp``."""
    for name in ("sip_timestamp", "participant_timestamp", "timestamp"):
        value = getattr(row, name, None)
        if value is not None:
            return int(value)
    return None
