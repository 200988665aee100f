"""Gap backfill over REST, in order with the live stream (issue 15).

:class:`Backfill` (``massive_rt.backfill.stage``) is given to an adapter:
``RealTimeDataAdapter(source, backfill=Backfill(...))``. The plan (:mod:`.plan`) and the seam rules
(:mod:`.seam`) are pure; the fetches run on :mod:`.workers` threads. The base install imports this
package; only building a :class:`~massive_rt.rest.RestHistory` (``Backfill()`` without ``history=``)
needs the ``rest`` extra.
"""

from __future__ import annotations

from .plan import BACKFILLABLE, GapPlan, Target, plan_gap
from .stage import Backfill, BackfillStats, HistoryProvider
from .status import BACKFILL_DONE, BACKFILL_FAILED, BACKFILL_PARTIAL, BACKFILL_STARTED, BackfillStatus

__all__ = [
    "BACKFILLABLE",
    "BACKFILL_DONE",
    "BACKFILL_FAILED",
    "BACKFILL_PARTIAL",
    "BACKFILL_STARTED",
    "Backfill",
    "BackfillStats",
    "BackfillStatus",
    "GapPlan",
    "HistoryProvider",
    "Target",
    "plan_gap",
]
