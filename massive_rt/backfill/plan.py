"""What a gap asks to backfill: pure functions, no I/O, no threads.

A ``gap`` status names its connection and carries, per event type and symbol, the last event
delivered before the disconnect (:class:`~massive_rt.SymbolMark`). :func:`plan_gap` turns it and
the connection's subscriptions into :class:`Target` s (one per explicit ticker of a backfillable
channel) and the channels it cannot backfill (wildcards; channels REST has no history for).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import attrs

from ..enums import Market
from ..models import StatusMessage

__all__ = [
    "BACKFILLABLE",
    "NOT_BACKFILLABLE",
    "WILDCARD",
    "GapPlan",
    "Target",
    "plan_gap",
    "window_ns",
]

logger = logging.getLogger(__name__)

#: ``(market, ev)`` → ``(RestHistory method, bar timespan)``: the channels REST can refill.
BACKFILLABLE: dict[tuple[Market, str], tuple[str, str | None]] = {
    (Market.STOCKS, "T"): ("trades", None), (Market.STOCKS, "Q"): ("quotes", None),
    (Market.STOCKS, "AM"): ("aggs", "minute"), (Market.STOCKS, "A"): ("aggs", "second"),
    (Market.OPTIONS, "T"): ("trades", None), (Market.OPTIONS, "Q"): ("quotes", None),
    (Market.OPTIONS, "AM"): ("aggs", "minute"), (Market.OPTIONS, "A"): ("aggs", "second"),
    (Market.INDICES, "AM"): ("aggs", "minute"), (Market.INDICES, "A"): ("aggs", "second"),
    (Market.CRYPTO, "XT"): ("trades", None),
    (Market.CRYPTO, "XA"): ("aggs", "minute"), (Market.CRYPTO, "XAS"): ("aggs", "second"),
    (Market.FOREX, "C"): ("quotes", None),
    (Market.FOREX, "CA"): ("aggs", "minute"), (Market.FOREX, "CAS"): ("aggs", "second"),
}  # fmt: skip

#: Reasons a channel is skipped.
WILDCARD = "wildcard"
NOT_BACKFILLABLE = "not_backfillable"

_NS_PER_MS = 1_000_000


@attrs.frozen(kw_only=True)
class Target:
    """One symbol of one channel to refill after a gap.

    Attributes:
        channel: ``"T.AAPL"``.
        ev: ``"T"``; symbol: ``"AAPL"``; market: its market.
        method: ``"trades"``, ``"quotes"`` or ``"aggs"``; timespan: ``"minute"``/``"second"`` for bars.
        start_ms: exchange time (ms) the window starts at: the symbol's mark, else the gap's start.
        sequence: the mark's sequence number (None: no mark, or an event type without one).
        marked: True when ``start_ms`` comes from the symbol's own mark.
    """

    channel: str
    ev: str
    symbol: str
    market: Market
    method: str
    timespan: str | None
    start_ms: int
    sequence: int | None = None
    marked: bool = True


@attrs.frozen(kw_only=True)
class GapPlan:
    """The targets of one gap, and the channels skipped: ``((channel, reason), ...)``."""

    targets: tuple[Target, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()


def plan_gap(status: StatusMessage, channels: Iterable[str], market: Market) -> GapPlan:
    """Targets for ``status`` (a ``gap``) over the connection's subscribed ``channels``.

    A symbol's window starts at its mark (the last event of that type and symbol delivered before
    the disconnect). A symbol without a mark (nothing delivered on the connection, or more symbols
    than ``last_seen_limit``) starts at the gap's ``gap_start_ns`` — the receive time of the last
    data before the drop, taken as exchange time.
    """
    marks = {(m.ev, m.symbol): m for m in status.last_seen}
    fallback = (status.gap_start_ns or status.received_at_ns or 0) // _NS_PER_MS
    targets: list[Target] = []
    skipped: list[tuple[str, str]] = []
    for channel in sorted(set(channels)):
        ev, _, ticker = channel.partition(".")
        if ticker == "*":
            skipped.append((channel, WILDCARD))
            continue
        kind = BACKFILLABLE.get((market, ev))
        if kind is None or not ticker:
            skipped.append((channel, NOT_BACKFILLABLE))
            continue
        mark = marks.get((ev, ticker))
        start = mark.timestamp if mark is not None and _is_int(mark.timestamp) else None
        sequence = mark.sequence if mark is not None and _is_int(mark.sequence) else None
        targets.append(
            Target(
                channel=channel, ev=ev, symbol=ticker, market=market, method=kind[0], timespan=kind[1],
                start_ms=fallback if start is None else start, sequence=sequence, marked=start is not None,
            )
        )  # fmt: skip
    return GapPlan(targets=tuple(targets), skipped=tuple(skipped))


def window_ns(start_ms: int, end_ms: int) -> tuple[int, int]:
    """The inclusive nanosecond window ``RestHistory`` takes for ``[start_ms, end_ms]`` (whole milliseconds)."""
    return start_ms * _NS_PER_MS, max(start_ms, end_ms) * _NS_PER_MS + _NS_PER_MS - 1


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
