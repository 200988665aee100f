"""Duplicate suppression: drop an event already delivered within a bounded window of recent events.

A :class:`DuplicateFilter` remembers the identity keys of the last ``window`` events that had one
and removes from each batch the events whose key it already holds. It is pure logic, with no I/O
and no thread of its own; clients, pools and adapters call :meth:`DuplicateFilter.filter` on each
decoded batch when created with ``dedupe=True``.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import attrs

from ._util import snapshot_dict
from ._validate import require_int
from .models import (
    CryptoTrade,
    EquityQuote,
    EquityTrade,
    Event,
    FuturesTrade,
    Imbalance,
    LimitUpLimitDown,
)

__all__ = ["DEFAULT_WINDOW", "DedupeStats", "DuplicateFilter", "KEYED_CLASSES", "identity_key"]

logger = logging.getLogger(__name__)

#: Default number of identity keys a :class:`DuplicateFilter` remembers (about 30 MB of trade keys).
DEFAULT_WINDOW = 100_000

Key = tuple[Any, ...]
E = TypeVar("E", bound=Event)


# One plain function per class rather than ``operator.attrgetter``: on CPython 3.11 a function's
# attribute loads specialise to direct slot reads, which takes about 40% less time than an
# attrgetter of the same fields (benchmarks/bench_dedupe.py), and it can refuse an event with no
# identity in the same call. Every key starts with the ``ev`` code; keys of classes that share a
# code (``T`` is an EquityTrade or a FuturesTrade) have different lengths, so they never collide.
def _equity_trade_key(event: EquityTrade) -> Key | None:
    trade_id, sequence = event.id, event.sequence_number
    if trade_id is None and sequence is None:
        return None
    return (event.event_type, event.symbol, event.exchange, trade_id, sequence, event.timestamp)


def _equity_quote_key(event: EquityQuote) -> Key | None:
    sequence = event.sequence_number
    if sequence is None:
        return None
    return (event.event_type, event.symbol, sequence, event.timestamp)


def _luld_key(event: LimitUpLimitDown) -> Key | None:
    sequence = event.sequence_number
    if sequence is None:
        return None
    return (event.event_type, event.symbol, sequence, event.timestamp)


def _imbalance_key(event: Imbalance) -> Key | None:
    sequence = event.symbol_sequence
    if sequence is None:
        return None
    return (event.event_type, event.symbol, event.exchange_id, sequence, event.time_stamp)


def _crypto_trade_key(event: CryptoTrade) -> Key | None:
    trade_id = event.id
    if trade_id is None:
        return None
    return (event.event_type, event.pair, event.exchange, trade_id, event.timestamp)


def _futures_trade_key(event: FuturesTrade) -> Key | None:
    sequence = event.sequence_number
    if sequence is None:
        return None
    return (event.event_type, event.symbol, sequence, event.timestamp)


#: Event class → its identity-key function. Exact classes: a subclass is never deduplicated.
_KEY_FUNCTIONS: dict[type[Event], Callable[[Any], Key | None]] = {
    EquityTrade: _equity_trade_key,
    EquityQuote: _equity_quote_key,
    LimitUpLimitDown: _luld_key,
    Imbalance: _imbalance_key,
    CryptoTrade: _crypto_trade_key,
    FuturesTrade: _futures_trade_key,
}

#: The event classes a :class:`DuplicateFilter` may suppress; every other event always passes.
KEYED_CLASSES: frozenset[type[Event]] = frozenset(_KEY_FUNCTIONS)


def identity_key(event: Event) -> Key | None:
    """The key :class:`DuplicateFilter` compares ``event`` on, or ``None`` when it has no identity.

    For inspection and tests; :meth:`DuplicateFilter.filter` uses the same functions directly.
    """
    key_of = _KEY_FUNCTIONS.get(event.__class__)
    return None if key_of is None else key_of(event)


@attrs.frozen(kw_only=True)
class DedupeStats:
    """Snapshot of a :class:`DuplicateFilter`'s counters.

    Attributes:
        window: the most identity keys the filter remembers.
        size: identity keys it holds now (never more than ``window``).
        events: events passed to :meth:`~DuplicateFilter.filter`, in total.
        checked: of which had an identity and were looked up (delivered or suppressed).
        suppressed: of which were duplicates and were removed.
        unkeyed: of which had no identity and passed without a look-up (a class never
            deduplicated, identity fields missing, or a value that cannot be hashed).
    """

    window: int
    size: int
    events: int
    checked: int
    suppressed: int
    unkeyed: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (for a health endpoint)."""
        return snapshot_dict(self)


class DuplicateFilter:
    """Removes events whose identity was already seen among the last ``window`` identities.

    Identity, per event class (``ev`` is the event's ``event_type``):

    * :class:`~massive_rt.EquityTrade` (stocks and options ``T``): ``(ev, symbol, exchange, id,
      sequence_number, timestamp)``; needs a trade ``id`` or a ``sequence_number`` (options
      trades carry no ``id``).
    * :class:`~massive_rt.EquityQuote` (``Q``), :class:`~massive_rt.LimitUpLimitDown` (``LULD``)
      and :class:`~massive_rt.FuturesTrade`: ``(ev, symbol, sequence_number, timestamp)``;
      needs a ``sequence_number``.
    * :class:`~massive_rt.Imbalance` (``NOI``): ``(ev, symbol, exchange_id, symbol_sequence,
      time_stamp)``; needs a ``symbol_sequence``.
    * :class:`~massive_rt.CryptoTrade` (``XT``): ``(ev, pair, exchange, id, timestamp)``; needs
      an ``id``.

    Only the identity counts: the source assigns these ids and sequence numbers once per message,
    so an event matching a remembered key is suppressed even if its other values differ.

    Everything else is **never** suppressed: aggregates (``A``, ``AM``, ``CA``, ``XA`` ...),
    index values, fair market values, launchpad values, forex, crypto and futures quotes,
    level-2 books, :class:`~massive_rt.StatusMessage`, :class:`~massive_rt.UnknownEvent`,
    :class:`~massive_rt.RawFrame`, and any subclass or other class. These carry no identifier
    assigned at the source, so nothing tells a re-sent copy from a genuine new event: an
    aggregate re-sent for the same window may be a correction (late trades), and two quotes or
    index values with the same content at the same millisecond are both real updates. Keying them
    on a natural identity (symbol and window, say) would silently drop corrections; keying them on
    their whole content would still merge distinct updates. A duplicated bar or value is
    idempotent for a consumer that keeps the latest; a dropped correction is not recoverable.
    Likewise an event of a keyed class whose identity fields are missing, or hold a value that
    cannot be hashed (a malformed frame), passes unchecked.

    The timestamp is part of every key although the source's ids should be unique without it:
    sequence numbers and trade ids restart every session, and in a long-running process following a
    few quiet symbols, keys from a previous session can still be in the window; with the
    timestamp, Monday's trade ``q=1`` is not mistaken for Friday's. A re-sent copy repeats the
    timestamp (it is the source's, not the send time). ``received_at_ns`` and ``connection`` are
    not part of any key: the same trade read on two connections is a duplicate.

    The window is FIFO over first sightings: a key is remembered until ``window`` newer distinct
    keys have been admitted after it, whatever repeats of it arrive meanwhile; then the same key
    passes again (and starts a new stay). Only events with an identity enter the window. Memory
    is bounded by ``window``: about 300 bytes per key for stock trades (the key tuple and the
    strings and integers it keeps alive, plus the set and queue slots), so about 30 MB at the
    default window; see ``benchmarks/bench_dedupe.py``.

    Thread-safe: several threads may call :meth:`filter` at once (a pool's connections decode on
    their own threads); each call holds one lock for the whole batch, so a key is delivered by
    exactly one of them.

    Args:
        window: how many identity keys to remember, an int >= 1.

    Raises:
        ConfigurationError: ``window`` is not an int >= 1 (``field="window"``).
    """

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        self._window = require_int("window", window)
        self._lock = threading.Lock()
        # A set for membership, a deque for the eviction order. Measured (benchmarks/bench_dedupe.py,
        # 100k keys): a dict used as an ordered set is ~45x slower per eviction (``next(iter(d))``
        # skips the whole deleted prefix every time); an OrderedDict is as fast but has twice the
        # container bytes per key; a list ring is as fast and as small but is allocated up front.
        self._seen: set[Key] = set()
        self._order: collections.deque[Key] = collections.deque()
        self._events = 0
        self._checked = 0
        self._suppressed = 0
        self._logged = False

    @property
    def window(self) -> int:
        """The most identity keys remembered."""
        return self._window

    @property
    def size(self) -> int:
        """Identity keys held now (at most :attr:`window`)."""
        return len(self._order)

    @property
    def suppressed(self) -> int:
        """Duplicates removed so far."""
        return self._suppressed

    def filter(self, events: list[E]) -> list[E]:
        """The events of ``events`` that are not duplicates, in their order.

        Returns ``events`` itself, untouched, when none was suppressed (the common case: no copy);
        otherwise a new list. Never raises on event content.
        """
        key_functions = _KEY_FUNCTIONS.get
        out: list[E] | None = None
        with self._lock:
            seen = self._seen
            add = seen.add
            discard = seen.discard
            order = self._order
            push = order.append
            pop = order.popleft
            size = len(seen)
            window = self._window
            checked = suppressed = 0
            for index, event in enumerate(events):
                key_of = key_functions(event.__class__)
                if key_of is not None:
                    key = key_of(event)
                    if key is not None:
                        try:
                            add(key)  # one hash and probe: a duplicate leaves the size unchanged
                        except TypeError:  # a list or dict where the schema has a scalar: no identity
                            pass
                        else:
                            checked += 1
                            if len(seen) == size:
                                suppressed += 1
                                if out is None:
                                    out = events[:index]
                                continue
                            push(key)
                            if size == window:
                                discard(pop())
                            else:
                                size += 1
                if out is not None:
                    out.append(event)
            self._events += len(events)
            self._checked += checked
            if suppressed:
                self._suppressed += suppressed
                if not self._logged:
                    self._logged = True
                    logger.debug("duplicate events suppressed (first batch: %d of %d); counted in stats()",
                                 suppressed, len(events))  # fmt: skip
        return events if out is None else out

    def clear(self) -> None:
        """Forget every key (counters are kept): the next copy of any event passes."""
        with self._lock:
            self._seen.clear()
            self._order.clear()

    def stats(self) -> DedupeStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            return DedupeStats(
                window=self._window,
                size=len(self._order),
                events=self._events,
                checked=self._checked,
                suppressed=self._suppressed,
                unkeyed=self._events - self._checked,
            )

    def __repr__(self) -> str:
        return f"DuplicateFilter(window={self._window}, size={self.size}, suppressed={self._suppressed})"
