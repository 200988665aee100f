"""A drop-in for code written against the official ``massive`` client's WebSocket API.

Change the import lines and keep the rest::

    # from massive import WebSocketClient
    # from massive.websocket.models import WebSocketMessage, Market, Feed, EquityTrade
    from massive_rt.compat import WebSocketClient, WebSocketMessage, Market, Feed, EquityTrade

:class:`WebSocketClient` (``run``, ``connect``, ``subscribe``, ``unsubscribe``,
``unsubscribe_all``, ``close``), the models (same names, fields and field order, with
``from_dict``), ``parse``, ``Feed``, ``Market``, ``EventType`` and ``AuthError`` mirror the
official ones; underneath, a :class:`massive_rt.MassiveWebSocketClient` does the networking.
``massive`` itself is never imported. ``docs/compat.md`` lists what differs.
"""

from __future__ import annotations

import logging

from .client import ENV_KEYS, AuthError, CloseResult, WebSocketClient, resolve_api_key
from .common import EventType, Feed, Market
from .models import (
    MARKET_EVENT_MAP,
    CryptoQuote,
    CryptoTrade,
    CurrencyAgg,
    EquityAgg,
    EquityQuote,
    EquityTrade,
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
    WebSocketMessage,
    parse,
    parse_single,
)

__all__ = [
    "ENV_KEYS",
    "MARKET_EVENT_MAP",
    "AuthError",
    "CloseResult",
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
    "WebSocketClient",
    "WebSocketMessage",
    "parse",
    "parse_single",
    "resolve_api_key",
]

logger = logging.getLogger(__name__)
