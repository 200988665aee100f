"""LastValueCache: the latest trade, quote and minute/second bar per (market, symbol), kept from an
adapter's delivered batches and readable from any thread.

The write side runs once per delivered batch (:meth:`~massive_rt.RealTimeDataAdapter.on_batch`), on
whichever thread runs the adapter's callbacks (the dispatcher, or a reader with
``dispatch="adaptive"`` or ``"inline"``), after the batch's handlers: per event, three dict
lookups (its class, its connection, its ``ev``) find the table of its (kind, market) and one store
keyed by its symbol keeps the event itself (no lock, no record built, no per-event call). Readers never take a lock
either: a read is two ``dict.get`` and wraps the event in a :class:`CachedValue` on the reader's
own thread.

Consistency, precisely: all stores happen on the one thread at a time that runs the adapter's
callbacks, in dispatch order. ``cache.snapshot()`` copies every table in one C call
(``list(map(dict.copy, tables))``) that runs no Python code of its own (keys are ``str``), so
under the GIL no store interleaves with it: a snapshot holds the values after some prefix of the
dispatched events — never one symbol's newer value beside another's older one that was already
replaced before it. The one exception: a garbage collection triggered by a copy's allocation
runs finalizers, which may let the GIL switch between two tables' copies (each table's copy is
still consistent on its own, as on a free-threaded build). Two
separate reads (``trade(A)`` then ``trade(B)``) have no such joint guarantee; take a snapshot for
that.
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
_MAX_ROUTES = 256  # ev codes remembered per connection

#: (event class, its table or None when not cached, True: keyed by ``pair`` / False: ``symbol`` /
#: None: not a cached class).
_Route = tuple[type, "dict[str, MarketEvent | CachedValue] | None", "bool | None"]

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

    def _lookup(self, key: tuple[str, str, str]) -> MarketEvent | CachedValue | None:
        return self._values.get(key)

    def trade(self, symbol: str, market: Market | str | None = None) -> CachedValue | None:
        """The latest trade of ``symbol``, or None."""
        return _wrap(self._lookup((TRADE, self._market_of(market), _symbol(symbol))))

    def quote(self, symbol: str, market: Market | str | None = None) -> CachedValue | None:
        """The latest quote of ``symbol``, or None."""
        return _wrap(self._lookup((QUOTE, self._market_of(market), _symbol(symbol))))

    def bar(self, symbol: str, market: Market | str | None = None, interval: str = MINUTE) -> CachedValue | None:
        """The latest bar of ``symbol``: per-minute (``AM``/``CA``/``XA``, the default) or, with
        ``interval="second"``, per-second (``A``/``CAS``/``XAS``); or None."""
        return _wrap(self._lookup((_interval(interval), self._market_of(market), _symbol(symbol))))

    def get(self, key: tuple[str, str, str]) -> CachedValue | None:
        """The value under ``(kind, market, symbol)``, or None."""
        return _wrap(self._lookup(key))

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

    Fed by one batch handler (:meth:`~massive_rt.RealTimeDataAdapter.on_batch`), on the thread
    that runs the adapter's callbacks (the dispatcher, or a reader under ``dispatch="adaptive"`` or
    ``"inline"``), after the handlers
    of each delivered batch: a handler reading the cache sees the values up to the previous batch
    at least. Reads (``trade``, ``quote``, ``bar``, ``snapshot``, ``stats``) are safe from any
    thread and never block the dispatcher; see the module docstring for what a snapshot
    guarantees. Works with any source of the adapter: a client, a pool (the market of an event is
    its connection's), a synthetic source, a Redis or replay source (the market each upstream
    connection's entries or records name).

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
        if not callable(getattr(adapter, "on_batch", None)) or not callable(getattr(adapter, "off_batch", None)):
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
        # {(kind, market): {symbol: value}}: tables are only ever added (setdefault), never removed.
        self._tables: dict[tuple[str, str], dict[str, MarketEvent | CachedValue]] = {}
        super().__init__({}, resolved)
        self._adapter = adapter
        self._source = source
        self._markets = _Markets(source, resolved)
        # The write side's routes, owned by the callback thread: {connection: {ev: route}}.
        self._routes: dict[str, dict[str | None, _Route]] = {}
        self._unkeyed = 0
        self._seed_calls = 0
        self._seed_stored = 0
        self._seed_errors = 0
        self._registered = True
        adapter.on_batch(self._store_batch)
        if seed is not None:
            try:
                seed(self)
            except Exception:
                self._seed_errors += 1
                logger.exception("last-value cache: the seed callable raised; the cache fills from live events")
            finally:
                if owned is not None:
                    owned.close()

    # -------------------------------------------------------------- the write side (callback thread)

    def _store_batch(self, events: list[Any]) -> None:
        # The hot path, per event: one dict lookup (its ev, in its connection's routes: the
        # connection is the same str object along a batch, so its routes are found once per run)
        # and one store keyed by its symbol. No call, no tuple built, no lock.
        by_connection = self._routes
        last: str | None = None
        routes: dict[str | None, _Route] = {}
        unkeyed = 0
        for event in events:
            connection = event.connection
            if connection is not last:
                routes = by_connection.get(connection) or by_connection.setdefault(connection, {})
                last = connection
            route = routes.get(event.event_type)
            if route is None or event.__class__ is not route[0]:
                route = self._route(event, routes)
            table = route[1]
            if table is None:
                unkeyed += route[2] is not None  # a cached class whose ev is not a bar channel
                continue
            key = event.pair if route[2] else event.symbol
            if key is None:
                unkeyed += 1
            else:
                table[key] = event
        if unkeyed:
            self._unkeyed += unkeyed

    def _route(self, event: Any, routes: dict[str | None, _Route]) -> _Route:
        """Where events of this class and ``ev`` on this connection go (kept for the next ones)."""
        cls = event.__class__
        cached = _CACHED.get(cls)
        if cached is None:
            route: _Route = (cls, None, None)
        else:
            kind, attr = cached
            if kind == "bar":
                kind = _BAR_KINDS.get(event.event_type or "", "")
            table = self._tables.setdefault((kind, self._markets[event.connection]), {}) if kind else None
            route = (cls, table, attr == "pair")
        if len(routes) < _MAX_ROUTES and event.event_type not in routes:
            routes[event.event_type] = route  # bounded: an unknown ev on the wire adds one at most
        return route

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
            kind, market_value, symbol = key
            if self._tables.setdefault((kind, market_value), {}).setdefault(symbol, value) is value:
                stored += 1
        self._seed_calls += len(keyed)
        self._seed_stored += stored
        return stored

    # -------------------------------------------------------------- reads (any thread)

    def _lookup(self, key: tuple[str, str, str]) -> MarketEvent | CachedValue | None:
        table = self._tables.get(key[:2])
        return None if table is None else table.get(key[2])

    def _flat(self) -> dict[tuple[str, str, str], MarketEvent | CachedValue]:
        # Iterating the live dict of tables failed once ("dictionary changed size during iteration"):
        # a copy can allocate, a collection can run Python code, and the writer can add a table then.
        # The dict of tables is copied first (one C call) and the tables of that copy next.
        tables = self._tables.copy()
        copies = list(map(dict.copy, tables.values()))  # one C call: no store interleaves
        return {(kind, market, symbol): value for (kind, market), table in zip(tables, copies, strict=True)
                for symbol, value in table.items()}  # fmt: skip

    def snapshot(self) -> LastValues:
        """A consistent copy: the values after some prefix of the dispatched events (see the module)."""
        return LastValues(self._flat(), self._market)

    def items(self) -> Iterator[tuple[CacheKey, CachedValue]]:
        """Every ``(CacheKey, CachedValue)``, from a snapshot."""
        return self.snapshot().items()

    def __len__(self) -> int:
        return sum(map(len, self._tables.copy().values()))

    def __contains__(self, key: object) -> bool:
        if not (isinstance(key, tuple) and len(key) == 3):
            return False
        table = self._tables.get(key[:2])
        return table is not None and key[2] in table

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
        values = [value for table in list(self._tables.values()) for value in list(table.values())]
        return CacheStats(
            values=len(values),
            seeded=sum(1 for v in values if isinstance(v, CachedValue) and v.seeded),
            unkeyed=self._unkeyed,
            seed_calls=self._seed_calls,
            seed_stored=self._seed_stored,
            seed_errors=self._seed_errors,
        )

    def close(self) -> None:
        """Unregister the cache from the adapter; what is cached stays readable. Idempotent."""
        if self._registered:
            self._registered = False
            self._adapter.off_batch(self._store_batch)

    def __enter__(self) -> LastValueCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LastValueCache(values={len(self)}, market={self._market!r})"
