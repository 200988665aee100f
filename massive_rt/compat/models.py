"""The official client's WebSocket models, with the same names, fields, field order and ``from_dict``.

Each class is a mutable dataclass like the official ``@modelclass`` ones: positional arguments
follow the field order, every field defaults to ``None``, and ``from_dict`` reads the wire keys
of one JSON object (a key the server omitted gives ``None``; values are never converted).
:func:`parse` turns a decoded frame (a list of objects) into models by ``ev``, per market, as
the official ``massive.websocket.models.parse`` does: status objects are skipped silently,
objects of an ``ev`` the market does not have are skipped with a warning.

The wire key of each field comes from the ``WIRE`` table of the same-named class in
:mod:`massive_rt.models` (the attribute names there are the official ones), so the two stay in
step.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, NewType, TypeVar, Union

from .. import models as _native
from .common import EventType, Feed, Market

__all__ = [
    "MARKET_EVENT_MAP",
    "CryptoQuote",
    "CryptoTrade",
    "CurrencyAgg",
    "EquityAgg",
    "EquityQuote",
    "EquityTrade",
    "EventType",
    "FairMarketValue",
    "Feed",
    "ForexQuote",
    "FuturesAgg",
    "FuturesQuote",
    "FuturesTrade",
    "Imbalance",
    "IndexValue",
    "LaunchpadValue",
    "Level2Book",
    "LimitUpLimitDown",
    "Market",
    "WebSocketMessage",
    "parse",
    "parse_single",
]

logger = logging.getLogger(__name__)

_M = TypeVar("_M", bound="_Model")


@dataclass
class _Model:
    """Base of the models: ``from_dict`` reads ``_WIRE`` (one wire key per field, in field order)."""

    _WIRE: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_dict(cls: type[_M], d: Mapping[str, Any]) -> _M:
        """Build the model from one decoded JSON object (missing keys give ``None``)."""
        get = d.get
        return cls(*[get(key) for key in cls._WIRE])


@dataclass
class EquityAgg(_Model):
    """Aggregate (``A`` per second, ``AM`` per minute) of a stock, option contract or index."""

    event_type: str | EventType | None = None
    symbol: str | None = None
    volume: float | None = None
    accumulated_volume: float | None = None
    official_open_price: float | None = None
    vwap: float | None = None
    open: float | None = None
    close: float | None = None
    high: float | None = None
    low: float | None = None
    aggregate_vwap: float | None = None
    average_size: float | None = None
    start_timestamp: int | None = None
    end_timestamp: int | None = None
    otc: bool | None = None
    fractional_volume: str | None = None
    fractional_accumulated_volume: str | None = None


@dataclass
class CurrencyAgg(_Model):
    """Aggregate of a forex pair (``CA``/``CAS``) or a crypto pair (``XA``/``XAS``)."""

    event_type: str | EventType | None = None
    pair: str | None = None
    open: float | None = None
    close: float | None = None
    high: float | None = None
    low: float | None = None
    volume: float | None = None
    vwap: float | None = None
    start_timestamp: int | None = None
    end_timestamp: int | None = None
    avg_trade_size: float | None = None


@dataclass
class EquityTrade(_Model):
    """Trade (``T``) of a stock or an option contract."""

    event_type: str | EventType | None = None
    symbol: str | None = None
    exchange: int | None = None
    id: str | None = None
    tape: int | None = None
    price: float | None = None
    size: int | None = None
    fractional_shares: str | None = None
    conditions: list[int] | None = None
    timestamp: int | None = None
    sequence_number: int | None = None
    trf_id: int | None = None
    trf_timestamp: int | None = None


@dataclass
class CryptoTrade(_Model):
    """Trade (``XT``) of a crypto pair."""

    event_type: str | EventType | None = None
    pair: str | None = None
    exchange: int | None = None
    id: str | None = None
    price: float | None = None
    size: float | None = None
    conditions: list[int] | None = None
    timestamp: int | None = None
    received_timestamp: int | None = None


@dataclass
class EquityQuote(_Model):
    """Quote (``Q``) of a stock or an option contract."""

    event_type: str | EventType | None = None
    symbol: str | None = None
    bid_exchange_id: int | None = None
    bid_price: float | None = None
    bid_size: int | None = None
    ask_exchange_id: int | None = None
    ask_price: float | None = None
    ask_size: int | None = None
    condition: int | None = None
    indicators: list[int] | None = None
    timestamp: int | None = None
    tape: int | None = None
    sequence_number: int | None = None
    trf_id: int | None = None
    trf_timestamp: int | None = None


@dataclass
class ForexQuote(_Model):
    """Quote (``C``) of a forex pair."""

    event_type: str | EventType | None = None
    pair: str | None = None
    exchange_id: int | None = None
    ask_price: float | None = None
    bid_price: float | None = None
    timestamp: int | None = None


@dataclass
class CryptoQuote(_Model):
    """Quote (``XQ``) of a crypto pair."""

    event_type: str | EventType | None = None
    pair: str | None = None
    bid_price: float | None = None
    bid_size: float | None = None
    ask_price: float | None = None
    ask_size: float | None = None
    timestamp: int | None = None
    exchange_id: int | None = None
    received_timestamp: int | None = None


@dataclass
class Imbalance(_Model):
    """Net order imbalance (``NOI``) of a stock."""

    event_type: str | EventType | None = None
    symbol: str | None = None
    time_stamp: int | None = None
    auction_time: int | None = None
    auction_type: str | None = None
    symbol_sequence: int | None = None
    exchange_id: int | None = None
    imbalance_quantity: int | None = None
    paired_quantity: int | None = None
    book_clearing_price: float | None = None


@dataclass
class LimitUpLimitDown(_Model):
    """Limit up - limit down band (``LULD``) of a stock."""

    event_type: str | EventType | None = None
    symbol: str | None = None
    high_price: float | None = None
    low_price: float | None = None
    indicators: list[int] | None = None
    tape: int | None = None
    timestamp: int | None = None
    sequence_number: int | None = None


@dataclass
class Level2Book(_Model):
    """Level 2 book (``XL2``) of a crypto pair: ``[price, size]`` pairs per side."""

    event_type: str | EventType | None = None
    pair: str | None = None
    bid_prices: list[list[float]] | None = None
    ask_prices: list[list[float]] | None = None
    timestamp: int | None = None
    exchange_id: int | None = None
    received_timestamp: int | None = None


@dataclass
class IndexValue(_Model):
    """Value (``V``) of an index."""

    event_type: str | EventType | None = None
    value: float | None = None
    ticker: str | None = None
    timestamp: int | None = None


@dataclass
class LaunchpadValue(_Model):
    """Launchpad value (``LV``)."""

    event_type: str | EventType | None = None
    value: float | None = None
    symbol: str | None = None
    timestamp: int | None = None


@dataclass
class FairMarketValue(_Model):
    """Fair market value (``FMV``, business feeds)."""

    event_type: str | EventType | None = None
    fmv: float | None = None
    ticker: str | None = None
    timestamp: int | None = None


@dataclass
class FuturesTrade(_Model):
    """Trade (``T``) of a futures contract."""

    event_type: str | None = None
    symbol: str | None = None
    price: float | None = None
    size: int | None = None
    timestamp: int | None = None
    sequence_number: int | None = None


@dataclass
class FuturesQuote(_Model):
    """Quote (``Q``) of a futures contract."""

    event_type: str | None = None
    symbol: str | None = None
    bid_price: float | None = None
    bid_size: int | None = None
    bid_timestamp: int | None = None
    ask_price: float | None = None
    ask_size: int | None = None
    ask_timestamp: int | None = None
    sip_timestamp: int | None = None


@dataclass
class FuturesAgg(_Model):
    """Aggregate (``A``/``AM``) of a futures contract."""

    event_type: str | None = None
    symbol: str | None = None
    volume: int | None = None
    total_value: int | None = None
    open: float | None = None
    close: float | None = None
    high: float | None = None
    low: float | None = None
    transactions: int | None = None
    start_timestamp: int | None = None
    end_timestamp: int | None = None


_MODELS: tuple[type[_Model], ...] = (
    EquityAgg, CurrencyAgg, EquityTrade, CryptoTrade, EquityQuote, ForexQuote, CryptoQuote, Imbalance,
    LimitUpLimitDown, Level2Book, IndexValue, LaunchpadValue, FairMarketValue, FuturesTrade, FuturesQuote, FuturesAgg,
)  # fmt: skip


def _bind_wire_keys(models: Iterable[type[_Model]]) -> None:
    """Give each model the wire key of every field, from the ``WIRE`` table of its namesake in
    :mod:`massive_rt.models`; fail at import if a field has none (the tables drifted apart)."""
    for cls in models:
        native: type[_native.MarketEvent] = getattr(_native, cls.__name__)
        key_of = {attr: key for key, attr in native.WIRE}
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [name for name in names if name not in key_of]
        if missing:
            raise ImportError(f"massive_rt.models.{cls.__name__}.WIRE has no wire key for {missing}")
        cls._WIRE = tuple(key_of[name] for name in names)


_bind_wire_keys(_MODELS)

#: What a handler receives: the models of one frame (the official client's ``WebSocketMessage``).
WebSocketMessage = NewType(
    "WebSocketMessage",
    list[
        Union[  # noqa: UP007 - evaluated at runtime, where the | of many classes reads worse
            EquityAgg, CurrencyAgg, EquityTrade, CryptoTrade, EquityQuote, ForexQuote, CryptoQuote, Imbalance,
            LimitUpLimitDown, Level2Book, IndexValue, LaunchpadValue, FairMarketValue, FuturesTrade, FuturesQuote,
            FuturesAgg,
        ]
    ],
)  # fmt: skip

_FUTURES: dict[str, type[_Model]] = {"A": FuturesAgg, "AM": FuturesAgg, "T": FuturesTrade, "Q": FuturesQuote}

#: Market → ``ev`` → model class, as in the official client.
MARKET_EVENT_MAP: dict[Market, dict[str, type[_Model]]] = {
    Market.Stocks: {"A": EquityAgg, "AM": EquityAgg, "T": EquityTrade, "Q": EquityQuote, "LULD": LimitUpLimitDown,
                    "FMV": FairMarketValue, "NOI": Imbalance, "LV": LaunchpadValue},
    Market.Options: {"A": EquityAgg, "AM": EquityAgg, "T": EquityTrade, "Q": EquityQuote, "FMV": FairMarketValue,
                     "LV": LaunchpadValue},
    Market.Indices: {"A": EquityAgg, "AM": EquityAgg, "V": IndexValue},
    Market.Futures: dict(_FUTURES),
    Market.FuturesCME: dict(_FUTURES),
    Market.FuturesCBOT: dict(_FUTURES),
    Market.FuturesNYMEX: dict(_FUTURES),
    Market.FuturesCOMEX: dict(_FUTURES),
    Market.Crypto: {"XA": CurrencyAgg, "XAS": CurrencyAgg, "XT": CryptoTrade, "XQ": CryptoQuote, "XL2": Level2Book,
                    "FMV": FairMarketValue, "AM": EquityAgg, "LV": LaunchpadValue},
    Market.Forex: {"CA": CurrencyAgg, "CAS": CurrencyAgg, "C": ForexQuote, "FMV": FairMarketValue, "AM": EquityAgg,
                   "LV": LaunchpadValue},
}  # fmt: skip


def as_market(market: Market | Enum | str) -> Market:
    """``market`` as a :class:`Market`: a member, its value (``"stocks"``, ``"futures/cme"``) or a
    member of another enum with such a value (the official ``Market``, ``massive_rt.Market``).

    Raises:
        ValueError: not a market.
    """
    if isinstance(market, Market):
        return market
    if isinstance(market, Enum):
        market = market.value
    return Market(market)


def parse_single(data: Mapping[str, Any], logger: logging.Logger, market: Market | Enum | str) -> Any | None:
    """The model of one decoded object, or ``None`` (a status, or an ``ev`` the market does not have:
    logged as a warning). Same signature and outcome as the official ``parse_single``."""
    event_type = data.get("ev")
    model = MARKET_EVENT_MAP.get(as_market(market), {}).get(event_type) if isinstance(event_type, str) else None
    if model is not None:
        return model.from_dict(data)
    if event_type != "status":
        logger.warning("Unknown event type '%s' for market %s", event_type, as_market(market))
    return None


def parse(msg: Iterable[Any], logger: logging.Logger, market: Market | Enum | str) -> list[Any]:
    """The models of one decoded frame (a list of objects), in order; statuses and unknown or
    malformed objects are left out (the latter with a warning). Same signature and outcome as the
    official ``parse`` for the frames the server sends; objects that are not JSON objects are
    skipped with a warning instead of raising."""
    out: list[Any] = []
    for item in msg:
        if not isinstance(item, Mapping):
            logger.warning("could not parse message %r", item)
            continue
        model = parse_single(item, logger, market)
        if model is not None:
            out.append(model)
    return out
