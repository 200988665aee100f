"""The mock server's own channel table, written from ``docs/protocol.md`` §3-§4.2.

It is deliberately *not* imported from :mod:`massive_rt.protocol`: the mock plays the server, and a
server that validates channels with the client's own rules can never disagree with the client.
Tests change it per server (``MockMassiveServer(channels=...)``) to play a Massive that has
added a channel the client does not know yet (crypto ``XS``), or dropped one.

What the server does with a param, as documented or observed (§3.1-§3.2):

* ``<prefix>.<ticker>``: the ticker is everything after the first dot (``T.BRK.B``);
  ``<prefix>.*`` is a wildcard, except options ``Q`` (no wildcard: ignored here).
* A prefix the market does not have, a param without a dot, an empty prefix or ticker, a ticker
  with whitespace or a ``*`` that is not the whole ticker: silently ignored (no ack, no error).
* An unknown *ticker* on a known prefix is acknowledged (and never has data).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

__all__ = ["DEFAULT_CHANNELS", "NO_WILDCARD", "ChannelTable", "channel_table"]

logger = logging.getLogger(__name__)

_STOCKS = frozenset({"T", "Q", "A", "AM", "LULD", "NOI", "FMV", "LV"})
_FUTURES = frozenset({"T", "Q", "A", "AM"})

#: Market path → subscribe prefixes the documented server accepts (docs/protocol.md §4.2).
DEFAULT_CHANNELS: Mapping[str, frozenset[str]] = {
    "stocks": _STOCKS,
    "options": frozenset({"T", "Q", "A", "AM", "FMV", "LV"}),
    "forex": frozenset({"C", "CA", "CAS", "FMV", "AM", "LV"}),
    "crypto": frozenset({"XT", "XQ", "XL2", "XA", "XAS", "FMV", "AM", "LV"}),
    "indices": frozenset({"A", "AM", "V"}),
    "futures": _FUTURES,
    "futures/cme": _FUTURES,
    "futures/cbot": _FUTURES,
    "futures/nymex": _FUTURES,
    "futures/comex": _FUTURES,
}

#: (market, prefix) pairs that take no wildcard: options quotes, 1,000 contracts per connection.
NO_WILDCARD: frozenset[tuple[str, str]] = frozenset({("options", "Q")})


class ChannelTable:
    """Which subscribe params a mock server accepts, per market.

    Args:
        channels: market path → prefixes, replacing :data:`DEFAULT_CHANNELS` for the markets it
            names (markets it does not name keep the defaults).
    """

    def __init__(self, channels: Mapping[str, Iterable[str]] | None = None) -> None:
        table = dict(DEFAULT_CHANNELS)
        for market, prefixes in (channels or {}).items():
            if isinstance(prefixes, str):
                prefixes = (prefixes,)
            table[str(market).strip("/")] = frozenset(prefixes)
        self._table = table

    def prefixes(self, market: str) -> frozenset[str]:
        """The prefixes ``market`` accepts (empty for a market the table does not have)."""
        return self._table.get(market, frozenset())

    def accept(self, param: str, market: str) -> str | None:
        """The channel ``param`` subscribes on ``market``, or None when the server ignores it."""
        param = param.strip()
        prefix, dot, ticker = param.partition(".")
        if not dot or not prefix or not ticker or prefix not in self._table.get(market, ()):
            return None
        if any(c.isspace() for c in ticker) or "," in ticker:
            return None
        if "*" in ticker and (ticker != "*" or (market, prefix) in NO_WILDCARD):
            return None
        return param

    def __repr__(self) -> str:
        return f"ChannelTable({ {m: sorted(p) for m, p in self._table.items()}!r})"


def channel_table(channels: Mapping[str, Iterable[str]] | ChannelTable | None = None) -> ChannelTable:
    """``channels`` as a :class:`ChannelTable` (a table is returned as it is)."""
    return channels if isinstance(channels, ChannelTable) else ChannelTable(channels)
