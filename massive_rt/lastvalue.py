"""LastValueCache: the latest trade, quote and minute/second bar per (market, symbol), kept by an
adapter's handlers and readable from any thread.

The write side is one dict store per event, on whichever thread runs the adapter's callbacks (the
dispatcher, or a reader with ``dispatch="adaptive"`` or ``"inline"``); nothing else is done there (no lock, no
record built: the event itself is stored). Readers never take a lock either: a read is one
``dict.get`` and wraps the event in a :class:`CachedValue` on the reader's own thread.

Consistency, precisely: all stores happen on the one thread at a time that runs the adapter's
callbacks, in dispatch order. ``cache.snapshot()`` is one ``dict.copy()``; the copy runs in C and
calls no Python code (the keys are tuples of ``str``), so under the GIL no store interleaves with
it (on a free-threaded build the dict's own lock gives the same): a snapshot holds exactly the
values after some prefix of the dispatched events — never one symbol's newer value beside
another's older one that was already replaced before it. Two separate reads (``trade(A)`` then
``trade(B)``) have no such joint guarantee; take a snapshot for that.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple, cast

import attrs

from ._sourceview import connection_markets, default_market
from .enums import Market
from .errors import ConfigurationError
from .models import (
    CryptoQuote,
    CryptoTrade,
    CurrencyAgg,
    EquityAgg,
    EquityQuote,
    EquityTrade,
    ForexQuote,
    FuturesAgg,
    FuturesQuote,
    FuturesTrade,
    MarketEvent,
)
from .rest.seed import SnapshotHistory, snapshot_seed

__all__ = ["CacheKey", "CacheStats", "CachedValue", "LastValueCache", "LastValues"]

logger = logging.getLogger(__name__)

TRADE, QUOTE, MINUTE, SECOND = "trade", "quote", "minute", "second"
_BAR_KINDS = {"AM": MINUTE, "A": SECOND, "CA": MINUTE, "CAS": SECOND, "XA": MINUTE, "XAS": SECOND}
_INTERVALS = {MINUTE: MINUTE, SECOND: SECOND}
_MARKETS = frozenset(m.value for m in Market)

#: event class -> (kind, the attribute holding its symbol); a bar's kind comes from its ``ev``.
_CACHED: dict[type[MarketEvent], tuple[str, str]] = {
    EquityTrade: (TRADE, "symbol"), FuturesTrade: (TRADE, "symbol"), CryptoTrade: (TRADE, "pair"),
    EquityQuote: (QUOTE, "symbol"), FuturesQuote: (QUOTE, "symbol"), CryptoQuote: (QUOTE, "pair"),
    ForexQuote: (QUOTE, "pair"),
    EquityAgg: ("bar", "symbol"), FuturesAgg: ("bar", "symbol"), CurrencyAgg: ("bar", "pair"),
}  # fmt: skip


class CacheKey(NamedTuple):
    """Key of a cached value: ``kind`` (``"trade"``, ``"quote"``, ``"minute"``, ``"second"``),
    ``market`` (its value, ``"stocks"``) and ``symbol`` (the wire symbol or pair)."""

    kind: str
    market: str
    symbol: str


@attrs.frozen(kw_only=True)
class CachedValue:
    """One cached value.

    Attributes:
        value: the event (an :class:`~massive_rt.EquityTrade`, a quote, a bar ...).
        received_at_ns: wall-clock ``time.time_ns()`` when this process got it (for a seeded event
            without a receive time: when it was seeded).
        seeded: True for a value from :meth:`LastValueCache.seed` that no live event replaced yet.
    """

    value: MarketEvent
    received_at_ns: int
    seeded: bool = False

    @property
    def age(self) -> float:
        """Seconds since ``received_at_ns`` (wall clock, now)."""
        return self.age_at(time.time_ns())

    def age_at(self, now_ns: int) -> float:
        """Seconds between ``received_at_ns`` and ``now_ns`` (a ``time.time_ns()`` reading)."""
        return (now_ns - self.received_at_ns) / 1e9


def _wrap(stored: MarketEvent | CachedValue | None) -> CachedValue | None:
    if stored is None or isinstance(stored, CachedValue):
        return stored
    return CachedValue(value=stored, received_at_ns=stored.received_at_ns)


def _symbol(symbol: object) -> str:
    if not isinstance(symbol, str):
        raise ConfigurationError(f"symbol={symbol!r} must be a str (e.g. 'AAPL', 'X:BTC-USD')", field="symbol")
    return symbol


def _interval(interval: object) -> str:
    kind = _INTERVALS.get(interval) if isinstance(interval, str) else None
    if kind is None:
        raise ConfigurationError(f"interval={interval!r} must be 'minute' or 'second'", field="interval")
    return kind


class LastValues:
    """Read access to a mapping of cached values: the live cache, or a snapshot of it.

    Every read returns a :class:`CachedValue`, or ``None`` when nothing is cached for that key
    (a symbol never seen, or seen on another market): unknown symbols are not an error.
    ``market`` defaults to the source's market (a pool's first connection's).
    """

    def __init__(self, values: Mapping[tuple[str, str, str], MarketEvent | CachedValue], market: str) -> None:
        self._values = values
        self._market = market

    def _market_of(self, market: Market | str | None) -> str:
        if market is None:
            return self._market
        if isinstance(market, str) and market in _MARKETS:
            return str(market.value if isinstance(market, Market) else market)
        return Market.coerce(market, "market").value

    def trade(self, symbol: str, market: Market | str | None = None) -> CachedValue | None:
        """The latest trade of ``symbol``, or None."""
        return _wrap(self._values.get((TRADE, self._market_of(market), _symbol(symbol))))

    def quote(self, symbol: str, market: Market | str | None = None) -> CachedValue | None:
        """The latest quote of ``symbol``, or None."""
        return _wrap(self._values.get((QUOTE, self._market_of(market), _symbol(symbol))))

    def bar(self, symbol: str, market: Market | str | None = None, interval: str = MINUTE) -> CachedValue | None:
        """The latest bar of ``symbol``: per-minute (``AM``/``CA``/``XA``, the default) or, with
        ``interval="second"``, per-second (``A``/``CAS``/``XAS``); or None."""
        return _wrap(self._values.get((_interval(interval), self._market_of(market), _symbol(symbol))))

    def get(self, key: tuple[str, str, str]) -> CachedValue | None:
        """The value under ``(kind, market, symbol)``, or None."""
        return _wrap(self._values.get(key))

    def items(self) -> Iterator[tuple[CacheKey, CachedValue]]:
        """Every ``(CacheKey, CachedValue)`` (iterate a snapshot, not the live cache)."""
        for key, stored in list(self._values.items()):
            value = _wrap(stored)
            if value is not None:
                yield CacheKey(*key), value

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, key: object) -> bool:
        return key in self._values


@attrs.frozen(kw_only=True)
class CacheStats:
    """Counters of a :class:`LastValueCache`.

    Attributes:
        values: values cached (every kind, market and symbol).
        seeded: of which still seeded (no live event replaced them yet).
        unkeyed: events that could not be cached: no symbol, or a bar whose ``ev`` is not a bar channel.
        seed_calls: events offered to :meth:`LastValueCache.seed`, and ``seed_stored`` of them stored.
        seed_errors: exceptions raised by the ``seed`` callable (each logged).
    """

    values: int
    seeded: int
    unkeyed: int
    seed_calls: int
    seed_stored: int
    seed_errors: int


class _Markets(dict[str, str]):
    """``{connection name: market}``; a name not met yet (a pool added a connection) is looked up
    on the source once, and falls back to the default market."""

    def __init__(self, source: Any, default: str) -> None:
        super().__init__(connection_markets(source))
        self._source = source
        self._default = default

    def __missing__(self, connection: str) -> str:
        found = connection_markets(self._source).get(connection, self._default)
        self[connection] = found
        return found


class LastValueCache(LastValues):
    """The latest trade, quote and minute/second bar per (market, symbol) of an adapter's stream.

    Example::

        adapter = mrt.RealTimeDataAdapter(client)
        cache = mrt.LastValueCache(adapter)
        adapter.start()
        ...
        last = cache.trade("AAPL")           # from a request handler, any thread
        if last is not None and last.age < 5:
            price = last.value.price

    Fed by handlers registered with ``adapter.on(<event class>, ...)`` — alongside yours, taking
    no handler slot of yours — on the thread that runs the adapter's callbacks (the dispatcher, or a
    reader under ``dispatch="adaptive"`` or ``"inline"``); each event costs one dict store there.
    Reads (``trade``, ``quote``, ``bar``, ``snapshot``, ``stats``) are safe from any thread and never
    block the dispatcher; see the module docstring for what a snapshot guarantees. Works with any
    source of the adapter: a client, a pool (the market of an event is its connection's), a
    synthetic source.

    What is cached: trades (``EquityTrade``, ``CryptoTrade``, ``FuturesTrade``), quotes
    (``EquityQuote``, ``CryptoQuote``, ``ForexQuote``, ``FuturesQuote``) and bars (``EquityAgg``,
    ``CurrencyAgg``, ``FuturesAgg``; minute and second apart). "Latest" is the last dispatched.

    Args:
        adapter: the adapter whose events fill the cache (started or not).
        seed: fill the cache at start, on the constructing thread, before the constructor returns:
            ``True`` from Massive's REST snapshot of the source's subscribed tickers (of all tickers
            for a wildcard) through a :class:`~massive_rt.rest.RestHistory` built from
            ``MASSIVE_API_KEY``/``MASSIVE_REST_URL`` (the ``rest`` extra); a ``RestHistory`` (anything
            with ``snapshot_all``): the same through it; a callable: ``seed(cache)``, which calls
            :meth:`seed`. Live events dispatched meanwhile win: a seeded value never replaces a
            cached one. An exception from seeding is logged and counted (``stats().seed_errors``);
            the cache then fills from live events alone.
        market: default ``market`` of the reads (default: the source's market).
    """

    def __init__(
        self,
        adapter: Any,
        *,
        seed: bool | SnapshotHistory | Callable[[LastValueCache], object] | None = None,
        market: Market | str | None = None,
    ) -> None:
        on = getattr(adapter, "on", None)
        if not callable(on) or not callable(getattr(adapter, "off", None)):
            raise ConfigurationError(f"adapter={adapter!r} is not a RealTimeDataAdapter", field="adapter")
        owned = None
        if seed is True:
            from .rest import RestHistory

            seed = owned = RestHistory()
        if seed is False:
            seed = None
        if seed is not None and callable(getattr(seed, "snapshot_all", None)):
            seed = snapshot_seed(cast(SnapshotHistory, seed))
        if seed is not None and not callable(seed):
            raise ConfigurationError(f"seed={seed!r} must be True, a RestHistory or a callable taking the cache",
                                     field="seed")  # fmt: skip
        source = adapter.source
        resolved = default_market(source) if market is None else Market.coerce(market, "market").value
        self._store: dict[tuple[str, str, str], MarketEvent | CachedValue] = {}
        super().__init__(self._store, resolved)
        self._adapter = adapter
        self._source = source
        self._markets = _Markets(source, resolved)
        self._unkeyed = 0
        self._seed_calls = 0
        self._seed_stored = 0
        self._seed_errors = 0
        self._registered: list[tuple[type[MarketEvent], Callable[[Any], None]]] = []
        for cls, (kind, attr) in _CACHED.items():
            handler = self._bar_handler(attr) if kind == "bar" else self._handler(kind, attr)
            on(cls, handler)
            self._registered.append((cls, handler))
        if seed is not None:
            try:
                seed(self)
            except Exception:
                self._seed_errors += 1
                logger.exception("last-value cache: the seed callable raised; the cache fills from live events")
            finally:
                if owned is not None:
                    owned.close()

    # -------------------------------------------------------------- the write side (dispatcher)

    def _handler(self, kind: str, attr: str) -> Callable[[Any], None]:
        # The hot path: plain attribute reads (an attrgetter call costs more than the store) and one
        # subscript for the market (a connection not met yet is looked up once, by _Markets).
        store = self._store
        markets = self._markets

        def unkeyed() -> None:
            self._unkeyed += 1

        if attr == "symbol":

            def store_latest(event: Any) -> None:
                if event.symbol is None:
                    unkeyed()
                else:
                    store[(kind, markets[event.connection], event.symbol)] = event

        else:

            def store_latest(event: Any) -> None:
                if event.pair is None:
                    unkeyed()
                else:
                    store[(kind, markets[event.connection], event.pair)] = event

        store_latest.__qualname__ = f"LastValueCache.store_{kind}"
        return store_latest

    def _bar_handler(self, attr: str) -> Callable[[Any], None]:
        store = self._store
        markets = self._markets
        kinds = _BAR_KINDS

        def store_latest_bar(event: Any) -> None:
            symbol = getattr(event, attr)
            kind = kinds.get(event.event_type)
            if symbol is None or kind is None:
                self._unkeyed += 1
                return
            store[(kind, markets[event.connection], symbol)] = event

        store_latest_bar.__qualname__ = "LastValueCache.store_bar"
        return store_latest_bar

    # -------------------------------------------------------------- seeding (any thread)

    def seed(self, events: Iterable[MarketEvent], *, market: Market | str | None = None) -> int:
        """Store ``events`` as seeded values of ``market`` (default: the cache's), where nothing is
        cached yet; return how many were stored.

        The hook for a snapshot from elsewhere (REST): each value reads ``seeded=True`` until a live
        event replaces it. A seeded value never replaces a cached one (live or seeded), so seeding
        while streaming is safe: each store is one atomic ``dict.setdefault``. A bar's kind comes
        from its ``event_type`` (``"AM"``: minute, ``"A"``: second ...).

        Raises:
            ConfigurationError: an event is not a cacheable trade, quote or bar, or has no symbol
                (nothing is stored then).
        """
        resolved = self._market_of(market)
        now = time.time_ns()
        keyed: list[tuple[tuple[str, str, str], MarketEvent]] = []
        for event in events:
            kind, attr = _CACHED.get(type(event), ("", ""))
            symbol = getattr(event, attr, None) if attr else None
            if kind == "bar":
                kind = _BAR_KINDS.get(getattr(event, "event_type", None) or "", "")
            if not kind or not isinstance(symbol, str):
                raise ConfigurationError(
                    f"cannot seed {event!r}: not a trade, quote or bar with a symbol and a bar ev (AM, A, CA ...)",
                    field="events",
                )
            keyed.append(((kind, resolved, symbol), event))
        stored = 0
        for key, event in keyed:
            value = CachedValue(value=event, received_at_ns=event.received_at_ns or now, seeded=True)
            if self._store.setdefault(key, value) is value:
                stored += 1
        self._seed_calls += len(keyed)
        self._seed_stored += stored
        return stored

    # -------------------------------------------------------------- reads (any thread)

    def snapshot(self) -> LastValues:
        """A consistent copy: the values after some prefix of the dispatched events (see the module)."""
        return LastValues(self._store.copy(), self._market)

    @property
    def source(self) -> Any:
        """The adapter's source (what ``seed=True`` reads the subscriptions of)."""
        return self._source

    @property
    def market(self) -> str:
        """The default market of the reads."""
        return self._market

    def stats(self) -> CacheStats:
        """Counters (cheap; any thread)."""
        values = list(self._store.values())
        return CacheStats(
            values=len(values),
            seeded=sum(1 for v in values if isinstance(v, CachedValue) and v.seeded),
            unkeyed=self._unkeyed,
            seed_calls=self._seed_calls,
            seed_stored=self._seed_stored,
            seed_errors=self._seed_errors,
        )

    def close(self) -> None:
        """Unregister the cache's handlers from the adapter; what is cached stays readable. Idempotent."""
        registered, self._registered = self._registered, []
        for cls, handler in registered:
            self._adapter.off(cls, handler)

    def __enter__(self) -> LastValueCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LastValueCache(values={len(self._store)}, market={self._market!r})"
