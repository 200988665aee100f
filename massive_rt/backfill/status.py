"""The statuses a backfill reports, in order with the data (a :class:`~massive_rt.StatusMessage` subclass)."""

from __future__ import annotations

import logging

import attrs

from ..models import StatusMessage

__all__ = ["BACKFILL_DONE", "BACKFILL_FAILED", "BACKFILL_PARTIAL", "BACKFILL_STARTED", "BackfillStatus"]

logger = logging.getLogger(__name__)

BACKFILL_STARTED = "backfill_started"
BACKFILL_PARTIAL = "backfill_partial"
BACKFILL_FAILED = "backfill_failed"
BACKFILL_DONE = "backfill_done"


@attrs.frozen(kw_only=True)
class BackfillStatus(StatusMessage):
    """A backfill status: handlers of :meth:`~massive_rt.RealTimeDataAdapter.on_status` get it.

    ``status`` is one of:

    - ``backfill_started``: right after the ``gap`` status; ``channels`` lists the ``ev.symbol``
      being refilled.
    - ``backfill_partial``: something was not refilled; ``reason`` says why — ``"wildcard"`` (a
      ``T.*`` channel: REST needs a ticker), ``"not_backfillable"`` (no REST history for the
      channel), ``"max_window"`` / ``"max_events"`` (a budget; ``skipped_from_ms``/``skipped_to_ms``
      is the exchange-time range not refilled) or ``"hold_limit"`` (``dropped`` live events of the
      symbol were discarded while its backfill ran). ``channels``: what it concerns.
    - ``backfill_failed``: a symbol's fetch failed (``reason``: the error, the key never in it; or
      ``"stopped"``); its held live events follow.
    - ``backfill_done``: after the last symbol of the gap: ``events`` delivered, ``duplicates``
      left out at the seams, ``failed``/``partial`` symbols, ``held`` live events that waited,
      ``dropped`` of them discarded, ``duration_s`` since the gap.

    Per symbol, everything a backfill delivers comes after the ``gap`` status and before that
    symbol's live events after the reconnect.
    """

    reason: str | None = None
    events: int = 0
    duplicates: int = 0
    held: int = 0
    failed: int = 0
    partial: int = 0
    skipped_from_ms: int | None = None
    skipped_to_ms: int | None = None
    duration_s: float | None = None
