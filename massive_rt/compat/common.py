"""``Feed``, ``Market`` and ``EventType`` with the member names and values of the official client.

The official ``massive`` package defines them in ``massive.websocket.models.common``; these are
this library's own plain :class:`~enum.Enum` classes with the same members (aliases included),
so code written against the official client keeps working after its import line changes, and
nothing here imports ``massive``.
"""

from __future__ import annotations

import logging
from enum import Enum

__all__ = ["EventType", "Feed", "Market"]

logger = logging.getLogger(__name__)


class Feed(Enum):
    """A Massive feed: the value is the host of its WebSocket endpoint."""

    Delayed = "delayed.massive.com"
    RealTime = "socket.massive.com"
    Nasdaq = "nasdaqfeed.massive.com"
    PolyFeed = "polyfeed.massive.com"
    PolyFeedPlus = "polyfeedplus.massive.com"
    StarterFeed = "starterfeed.massive.com"
    Launchpad = "launchpad.massive.com"
    Business = "business.massive.com"
    EdgxBusiness = "edgx-business.massive.com"
    IEXBusiness = "iex-business.massive.com"
    DelayedBusiness = "delayed-business.massive.com"
    DelayedEdgxBusiness = "delayed-edgx-business.massive.com"
    DelayedNasdaqLastSaleBusiness = "delayed-nasdaq-last-sale-business.massive.com"
    DelayedNasdaqBasic = "delayed-nasdaq-basic-business.massive.com"
    DelayedFullMarketBusiness = "delayed-fullmarket-business.massive.com"
    FullMarketBusiness = "fullmarket-business.massive.com"
    NasdaqLastSaleBusiness = "nasdaq-last-sale-business.massive.com"
    NasdaqBasicBusiness = "nasdaq-basic-business.massive.com"


class Market(Enum):
    """A Massive market (cluster): the value is the URL path of its WebSocket endpoint."""

    Stocks = "stocks"
    Options = "options"
    Forex = "forex"
    Crypto = "crypto"
    Indices = "indices"
    Futures = "futures"  # CME, CBOT, NYMEX and COMEX
    FuturesCME = "futures/cme"
    FuturesCBOT = "futures/cbot"
    FuturesNYMEX = "futures/nymex"
    FuturesCOMEX = "futures/comex"


class EventType(Enum):
    """The ``ev`` values of market events. Several names share a value (they are aliases, as in
    the official enum: ``LaunchpadAggMin`` is ``EquityAggMin``, ``FuturesTrade`` is ``EquityTrade`` ...)."""

    EquityAgg = "A"
    EquityAggMin = "AM"
    CryptoAgg = "XA"
    CryptoAggSec = "XAS"
    ForexAgg = "CA"
    ForexAggSec = "CAS"
    EquityTrade = "T"
    CryptoTrade = "XT"
    EquityQuote = "Q"
    ForexQuote = "C"
    CryptoQuote = "XQ"
    Imbalances = "NOI"
    LimitUpLimitDown = "LULD"
    CryptoL2 = "XL2"
    Value = "V"
    LaunchpadValue = "LV"
    LaunchpadAggMin = "AM"  # noqa: PIE796 - an alias, as in the official enum
    BusinessFairMarketValue = "FMV"
    FuturesTrade = "T"  # noqa: PIE796 - an alias, as in the official enum
    FuturesQuote = "Q"  # noqa: PIE796 - an alias, as in the official enum
    FuturesAgg = "A"  # noqa: PIE796 - an alias, as in the official enum
    FuturesAggMin = "AM"  # noqa: PIE796 - an alias, as in the official enum
