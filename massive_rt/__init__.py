"""massive_rt: threaded, synchronous real-time market data from Massive (formerly Polygon.io).

One :class:`MassiveWebSocketClient` per connection (its own daemon reader thread feeding a
bounded, thread-safe queue); a :class:`ConnectionPool` for many connections under one
account's limit; a :class:`RealTimeDataAdapter` that runs your callbacks on one dispatcher
thread; and :mod:`massive_rt.testing`, a real local server that speaks Massive's protocol.
"""

from __future__ import annotations

import logging

from .adapter import AdapterStats, RealTimeDataAdapter
from .backfill import Backfill, BackfillStats, BackfillStatus
from .barclock import BarClock, BarClockStats, BarSlot
from .config import ClientConfig, LimitRetry, ReconnectPolicy
from .connection import ConnectionStats, MassiveWebSocketClient
from .dedupe import DedupeStats, DuplicateFilter
from .enums import AdapterState, ConnectionState, Feed, Market, Overflow
from .errors import (
    AuthenticationError,
    ClientClosedError,
    ConfigurationError,
    ConnectionClosedError,
    ConnectionLimitError,
    HandshakeError,
    MassiveRTError,
    RestDataError,
    RestError,
    SubscriptionError,
    WaitTimeoutError,
)
from .lastvalue import CachedValue, CacheKey, CacheStats, LastValueCache, LastValues
from .models import (
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
    SymbolMark,
    UnknownEvent,
)
from .pool import ConnectionPool, PoolStats
from .recording import (
    CorruptRecordingError,
    Recorder,
    RecorderStats,
    RecordingError,
    RecordingReader,
    ReplaySource,
    ReplayStats,
)
from .speedups import ACTIVE as accelerated
from .synthetic import SyntheticMarket, SyntheticSource, SyntheticStats

__version__ = "0.1.0"

__all__ = [
    "AdapterState",
    "AdapterStats",
    "AuthenticationError",
    "Backfill",
    "BackfillStats",
    "BackfillStatus",
    "BarClock",
    "BarClockStats",
    "BarSlot",
    "CacheKey",
    "CacheStats",
    "CachedValue",
    "ClientClosedError",
    "ClientConfig",
    "ConfigurationError",
    "ConnectionClosedError",
    "ConnectionLimitError",
    "ConnectionPool",
    "ConnectionState",
    "ConnectionStats",
    "CorruptRecordingError",
    "CryptoQuote",
    "CryptoTrade",
    "CurrencyAgg",
    "DedupeStats",
    "DuplicateFilter",
    "EquityAgg",
    "EquityQuote",
    "EquityTrade",
    "Event",
    "FairMarketValue",
    "Feed",
    "ForexQuote",
    "FuturesAgg",
    "FuturesQuote",
    "FuturesTrade",
    "HandshakeError",
    "Imbalance",
    "IndexValue",
    "LastValueCache",
    "LastValues",
    "LaunchpadValue",
    "Level2Book",
    "LimitRetry",
    "LimitUpLimitDown",
    "Market",
    "MarketEvent",
    "MassiveRTError",
    "MassiveWebSocketClient",
    "Overflow",
    "PoolStats",
    "RawFrame",
    "RealTimeDataAdapter",
    "ReconnectPolicy",
    "RestDataError",
    "RestError",
    "Recorder",
    "RecorderStats",
    "RecordingError",
    "RecordingReader",
    "ReplaySource",
    "ReplayStats",
    "StatusMessage",
    "SymbolMark",
    "SubscriptionError",
    "SyntheticMarket",
    "SyntheticSource",
    "SyntheticStats",
    "UnknownEvent",
    "WaitTimeoutError",
    "__version__",
    "accelerated",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
