"""Seed a :class:`~massive_rt.LastValueCache` from REST snapshots: what ``LastValueCache(adapter, seed=True)`` runs.

Pure orchestration over a history's ``snapshot_all`` (no HTTP code here, and no import of the
official client: a :class:`~massive_rt.rest.RestHistory` is passed in).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from .._sourceview import subscribed_channels
from ..enums import Market
from ..models import MarketEvent
from .convert import SnapshotState

__all__ = ["SNAPSHOT_MARKETS", "SnapshotHistory", "snapshot_seed"]

logger = logging.getLogger(__name__)

#: The markets Massive has v2 snapshots for.
SNAPSHOT_MARKETS = frozenset({Market.STOCKS, Market.CRYPTO, Market.FOREX})


class SnapshotHistory(Protocol):
    """What seeding needs: :meth:`RestHistory.snapshot_all <massive_rt.rest.RestHistory.snapshot_all>`."""

    def snapshot_all(
        self, symbols: Sequence[str] | None = ..., *, market: Market | str = ...
    ) -> list[SnapshotState]: ...


class _Seedable(Protocol):
    @property
    def source(self) -> Any: ...

    def seed(self, events: Iterable[MarketEvent], *, market: Market | str | None = None) -> int: ...


def snapshot_seed(history: SnapshotHistory) -> Callable[[_Seedable], int]:
    """A ``seed=`` callable for :class:`~massive_rt.LastValueCache`: per market of the adapter's
    source, the snapshot of its explicitly subscribed tickers — of every ticker when a channel of
    that market is a wildcard — stored as seeded trades, quotes and minute bars. Returns how many
    values were stored. Markets without snapshots (options, indices, futures) are skipped (logged)."""

    def seed(cache: _Seedable) -> int:
        stored = 0
        for market_value, channels in sorted(subscribed_channels(cache.source).items()):
            market = Market(market_value)
            if market not in SNAPSHOT_MARKETS:
                logger.info("last-value cache: no REST snapshot for %s; it fills from live events", market.value)
                continue
            tickers = sorted({c.partition(".")[2] for c in channels if not c.endswith(".*")})
            wildcard = any(c.endswith(".*") for c in channels)
            if not tickers and not wildcard:
                continue
            states = history.snapshot_all(None if wildcard else tickers, market=market)
            events = [e for s in states for e in (s.trade, s.quote, s.minute_bar) if e is not None]
            stored += cache.seed(events, market=market)
            logger.info("last-value cache: seeded %d value(s) of %d %s ticker(s) from the REST snapshot", stored,
                        len(states), market.value)  # fmt: skip
        return stored

    return seed
