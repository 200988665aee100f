"""massive_rt: threaded, synchronous real-time market data from Massive (formerly Polygon.io).

One :class:`MassiveWebSocketClient` per connection (its own daemon reader thread feeding a
bounded, thread-safe queue); a :class:`ConnectionPool` for many connections under one
account's limit; a :class:`RealTimeDataAdapter` that runs your callbacks on one dispatcher
thread; and :mod:`massive_rt.testing`, a real local server that speaks Massive's protocol.
"""

from __future__ import annotations

import logging

from .config import ClientConfig, ReconnectPolicy
from .enums import ConnectionState, Feed, Market, Overflow
from .errors import (
    AuthenticationError,
    ClientClosedError,
    ConfigurationError,
    ConnectionClosedError,
    ConnectionLimitError,
    MassiveRTError,
    SubscriptionError,
    WaitTimeoutError,
)
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
    UnknownEvent,
)

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "ClientClosedError",
    "ClientConfig",
    "ConfigurationError",
    "ConnectionClosedError",
    "ConnectionLimitError",
    "ConnectionState",
    "CryptoQuote",
    "CryptoTrade",
    "CurrencyAgg",
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
    "Imbalance",
    "IndexValue",
    "LaunchpadValue",
    "Level2Book",
    "LimitUpLimitDown",
    "Market",
    "MarketEvent",
    "MassiveRTError",
    "Overflow",
    "RawFrame",
    "ReconnectPolicy",
    "StatusMessage",
    "SubscriptionError",
    "UnknownEvent",
    "WaitTimeoutError",
    "__version__",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
