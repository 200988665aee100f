"""Per symbol, the last event a connection delivered: what ``disconnected`` and ``gap`` statuses carry.

A gap's receive-time window (``gap_start_ns``/``gap_end_ns``) does not cover what was lost in
flight: events the server sent before the disconnect but that never arrived carry exchange
timestamps earlier than the window. So the decoder keeps, per event type and symbol, a reference
to the last event it delivered (one dict store per event, inside the generated builders: no
tuple, no extra loop), and the consumer attaches a bounded snapshot of them,
:class:`~massive_rt.SymbolMark` s, to the ``disconnected`` status and to the ``gap`` status that
follows, as they pass in order with the data. A backfill of each symbol starts at its mark.

Marks are kept across reconnects (a quiet symbol keeps its last mark) and are per consumer:
they are what this consumer decoded, so ``raw=True`` has none.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable
from typing import Any

import attrs

from .models import (
    CurrencyAgg,
    EquityAgg,
    Event,
    FuturesAgg,
    FuturesQuote,
    Imbalance,
    MarketEvent,
    StatusMessage,
    SymbolMark,
)

__all__ = [
    "DEFAULT_LAST_SEEN_LIMIT",
    "DEFAULT_MARKS_CAPACITY",
    "GAP_STATUSES",
    "DeliveryMarks",
    "LastSeen",
    "mark_fields",
    "symbol_attribute",
]

logger = logging.getLogger(__name__)

#: Marks a status lists at most, by default (the rest is summarised).
DEFAULT_LAST_SEEN_LIMIT = 1_000

#: Symbols per event type whose marks a connection keeps at most, by default (the most recently
#: received; the oldest quarter is forgotten when a consumer finds the table over it).
DEFAULT_MARKS_CAPACITY = 100_000

#: The statuses that carry marks.
GAP_STATUSES = frozenset({"disconnected", "gap"})

# The exchange timestamp and sequence attributes, where they differ from ("timestamp", "sequence_number").
_TIMESTAMP_ATTRS: dict[type[MarketEvent], str] = {
    EquityAgg: "end_timestamp", CurrencyAgg: "end_timestamp", FuturesAgg: "end_timestamp",
    Imbalance: "time_stamp", FuturesQuote: "sip_timestamp",
}  # fmt: skip
_SEQUENCE_ATTRS: dict[type[MarketEvent], str] = {Imbalance: "symbol_sequence"}


def symbol_attribute(cls: type[MarketEvent]) -> str:
    """The attribute holding the symbol of ``cls`` (``symbol``, ``ticker`` or ``pair``)."""
    return next(attr for _, attr in cls.WIRE if attr in ("symbol", "ticker", "pair"))


def mark_fields(cls: type[MarketEvent]) -> tuple[str, str, str | None]:
    """``(symbol, timestamp, sequence)`` attributes of ``cls`` a mark reads (sequence None: it has none)."""
    attributes = {attr for _, attr in cls.WIRE}
    sequence = _SEQUENCE_ATTRS.get(cls, "sequence_number")
    return symbol_attribute(cls), _TIMESTAMP_ATTRS.get(cls, "timestamp"), sequence if sequence in attributes else None


@attrs.frozen
class LastSeen:
    """A snapshot of marks: the listed ones, and how many more (with their oldest timestamp)."""

    marks: tuple[SymbolMark, ...] = ()
    omitted: int = 0
    omitted_oldest: Any = None

    def apply(self, status: StatusMessage) -> StatusMessage:
        """``status`` carrying this snapshot."""
        return attrs.evolve(
            status, last_seen=self.marks, last_seen_omitted=self.omitted, last_seen_omitted_oldest=self.omitted_oldest
        )


def _mark(event: Any, ev: str) -> SymbolMark:
    symbol, timestamp, sequence = mark_fields(event.__class__)
    return SymbolMark(
        symbol=getattr(event, symbol), ev=ev, timestamp=getattr(event, timestamp),
        sequence=None if sequence is None else getattr(event, sequence), received_at_ns=event.received_at_ns,
    )  # fmt: skip


def _oldest(timestamps: Iterable[Any]) -> Any:
    numbers = [t for t in timestamps if isinstance(t, (int, float)) and not isinstance(t, bool)]
    return min(numbers) if numbers else None


class DeliveryMarks:
    """Per event type and symbol, the last event delivered (filled by a :class:`~massive_rt.protocol.Decoder`).

    ``by_ev[ev]`` is the dict the decoder's builders store into (``{symbol: event}``); the dicts
    are created once and never replaced, because the builders hold them. Used by one consumer
    at a time (under its consume lock), like its decoder.

    Memory is bounded: the consumer calls :meth:`bound` once per batch it decodes, which forgets
    the oldest marks of an event type holding more than ``capacity`` symbols (a wildcard over
    an options feed would otherwise keep an event for every contract ever seen).

    Args:
        evs: the event types of the market.
        limit: marks a snapshot lists at most (the most recently received); >= 1.
        capacity: symbols per event type kept at most (the most recently received).
    """

    def __init__(self, evs: Iterable[str], limit: int = DEFAULT_LAST_SEEN_LIMIT,
                 capacity: int = DEFAULT_MARKS_CAPACITY) -> None:  # fmt: skip
        self.by_ev: dict[str, dict[Any, Event]] = {ev: {} for ev in evs}
        self._tables = tuple(self.by_ev.values())
        self.limit = limit
        self.capacity = capacity
        #: Marks forgotten by :meth:`bound` so far.
        self.forgotten = 0
        self._ticks = 64
        #: The snapshot taken at the last ``disconnected`` status, for the ``gap`` that follows.
        self.pending: LastSeen | None = None

    def __len__(self) -> int:
        return sum(len(events) for events in self.by_ev.values())

    def tick(self) -> None:
        """:meth:`bound` every 64th call (for a consumer decoding one frame at a time, inline)."""
        self._ticks -= 1
        if self._ticks <= 0:
            self._ticks = 64
            self.bound()

    def bound(self) -> None:
        """Forget the oldest quarter of any event type's marks that outgrew ``capacity`` (cheap
        when none did: one ``len`` per event type)."""
        capacity = self.capacity
        for events in self._tables:
            if len(events) > capacity:
                keep = capacity - capacity // 4
                stale = heapq.nsmallest(len(events) - keep, events.items(), key=lambda item: item[1].received_at_ns)
                for symbol, _ in stale:
                    del events[symbol]
                self.forgotten += len(stale)

    def snapshot(self) -> LastSeen:
        """The marks now: the ``limit`` most recently received listed, the rest summarised."""
        # list(): a C-level copy, safe against a consumer of a predecessor still decoding.
        entries: list[tuple[Any, str]] = [
            (event, ev) for ev, events in list(self.by_ev.items()) for event in list(events.values())
        ]
        if len(entries) <= self.limit:
            kept, rest = sorted(entries, key=lambda entry: entry[0].received_at_ns, reverse=True), []
        else:
            kept = heapq.nlargest(self.limit, entries, key=lambda entry: entry[0].received_at_ns)
            listed = {id(event) for event, _ in kept}
            rest = [entry for entry in entries if id(entry[0]) not in listed]
        marks = tuple(_mark(event, ev) for event, ev in kept)
        if not rest:
            return LastSeen(marks)
        oldest = _oldest(getattr(event, mark_fields(event.__class__)[1]) for event, _ in rest)
        return LastSeen(marks, len(rest), oldest)

    def adopt(self, other: DeliveryMarks) -> None:
        """Start from ``other``'s marks (a pool's replacement connection continues its predecessor's)."""
        for ev, events in list(other.by_ev.items()):
            mine = self.by_ev.get(ev)
            if mine is not None:
                mine.update(events)

    def on_status(self, status: StatusMessage, predecessor: DeliveryMarks | None = None) -> StatusMessage:
        """``status`` with its marks when it is a ``disconnected`` or ``gap`` status (else as it is).

        A status that already carries marks (a relay's, parsed from the server) keeps them.
        """
        if status.last_seen or status.last_seen_omitted:
            if status.status == "disconnected":
                self.pending = LastSeen(status.last_seen, status.last_seen_omitted, status.last_seen_omitted_oldest)
            return status
        if status.status == "disconnected":
            self.pending = self.snapshot()
            return self.pending.apply(status)
        # A gap: the snapshot of the disconnect it closes (on a replacement: its predecessor's).
        seen = self.pending
        if seen is None and predecessor is not None:
            seen = predecessor.pending
        self.pending = None
        return (seen if seen is not None else self.snapshot()).apply(status)
