"""Where backfilled events meet live ones: positions and the de-duplication rules, pure functions.

An event's *position* is its exchange timestamp (``end_timestamp`` for bars, as in a
:class:`~massive_rt.SymbolMark`) and its sequence number, where its class has one. Across a seam:

- with sequence numbers on both sides (stocks and options trades and quotes), ``a`` is after ``b``
  when ``a.sequence > b.sequence``: exact, even for many events in one millisecond;
- otherwise by timestamp, strictly: an event in the same millisecond as the seam's event on the
  other side is taken to be that side's (it is not backfilled; equal events are never delivered
  twice).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from ..marks import mark_fields
from ..models import MarketEvent

__all__ = ["Position", "Watermark", "after", "cut", "position"]

logger = logging.getLogger(__name__)

_FIELDS: dict[type, tuple[str, str | None]] = {}


@attrs.frozen
class Position:
    """Exchange ``timestamp`` (the feed's unit, ms) and ``sequence`` (None when there is none)."""

    timestamp: Any
    sequence: Any = None


def position(event: MarketEvent) -> Position:
    """The position of ``event`` (see the module docstring)."""
    cls = event.__class__
    fields = _FIELDS.get(cls)
    if fields is None:
        _, timestamp, sequence = mark_fields(cls)
        fields = _FIELDS[cls] = (timestamp, sequence)
    return Position(getattr(event, fields[0]), None if fields[1] is None else getattr(event, fields[1]))


def after(a: Position, b: Position) -> bool:
    """True when ``a`` is strictly after ``b``. An unknown timestamp is after nothing."""
    if isinstance(a.sequence, int) and isinstance(b.sequence, int):
        return a.sequence > b.sequence
    if not isinstance(a.timestamp, (int, float)) or not isinstance(b.timestamp, (int, float)):
        return False
    return a.timestamp > b.timestamp


def cut(events: Iterable[MarketEvent], mark: Position, first_live: Position | None) -> tuple[list[MarketEvent], int]:
    """The backfilled ``events`` strictly after ``mark`` and strictly before ``first_live`` (None:
    no bound), and how many were left out as already delivered (or about to be, live)."""
    kept: list[MarketEvent] = []
    dropped = 0
    for event in events:
        where = position(event)
        if after(where, mark) and (first_live is None or after(first_live, where)):
            kept.append(event)
        else:
            dropped += 1
    return kept, dropped


@attrs.frozen
class Watermark:
    """The last backfilled position of a symbol whose backfill ended before any live event of it
    came: live events up to it are duplicates (REST already had them), until one passes it.

    ``tail`` holds the backfilled events at ``last``'s timestamp, for event types without sequence
    numbers: a live event equal to one of them is a duplicate, another one in that millisecond is new.
    """

    last: Position
    tail: tuple[MarketEvent, ...] = ()

    @classmethod
    def of(cls, delivered: Sequence[MarketEvent]) -> Watermark:
        """The watermark after ``delivered`` (non-empty, oldest first)."""
        last = position(delivered[-1])
        tail = tuple(e for e in delivered if position(e).timestamp == last.timestamp)
        return cls(last, tail if last.sequence is None else ())

    def covers(self, event: MarketEvent) -> bool:
        """True when the live ``event`` was already delivered from REST."""
        where = position(event)
        if isinstance(where.sequence, int) and isinstance(self.last.sequence, int):
            return where.sequence <= self.last.sequence
        if where.timestamp == self.last.timestamp:
            return event in self.tail
        return after(self.last, where)
