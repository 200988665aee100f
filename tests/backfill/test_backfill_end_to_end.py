"""Gap backfill end to end (issue 15): MockMassiveServer + MockMassiveREST on 127.0.0.1, a real client,
an adapter with a Backfill. Every trade is seen exactly once, in order per symbol, across reconnects."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import massive_rt as mrt
from massive_rt.testing import MockMassiveServer
from tests.conftest import wait_until

from .conftest import SYMBOLS, Publisher, Seen

Make = Callable[..., tuple[mrt.RealTimeDataAdapter, mrt.Backfill]]


def _reconnect_with_loss(server: MockMassiveServer, seen: Seen, publisher: Publisher, gaps: int) -> None:
    """Drop every connection once the stream flows, and wait for the backfill of that gap to finish."""
    before = len(seen.trades)
    assert wait_until(lambda: len(seen.trades) >= before + 5 * len(SYMBOLS), 10)
    assert server.drop_all() == 1
    seen.wait_status("backfill_done", gaps)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("dispatch", ["thread", "inline"])
def test_every_trade_is_seen_exactly_once_in_order_across_two_reconnects(
    massive_server: MockMassiveServer, backfilled: Make, seen: Seen, publisher: Publisher, dispatch: str
) -> None:
    _adapter, backfill = backfilled([f"T.{s}" for s in SYMBOLS], dispatch=dispatch)
    publisher.start()
    _reconnect_with_loss(massive_server, seen, publisher, 1)
    _reconnect_with_loss(massive_server, seen, publisher, 2)
    after = len(seen.trades)
    assert wait_until(lambda: len(seen.trades) >= after + 5 * len(SYMBOLS), 10)
    publisher.stop()
    total = sum(publisher.published.values())
    assert wait_until(lambda: len(seen.trades) >= total, 15), (len(seen.trades), total)

    for symbol in SYMBOLS:
        sequences = [t.sequence_number for t in seen.of(symbol)]
        assert sequences == list(range(publisher.published[symbol])), symbol
    backfilled_trades = [t for t in seen.trades if t.origin == "rest"]
    assert backfilled_trades, "the drops lost nothing: the test proves nothing"
    assert len(seen.trades) == total
    stats = backfill.stats()
    assert stats.events == len(backfilled_trades)
    assert stats.gaps == 2
    assert stats.failed == 0
    assert stats.partial == 0
    assert stats.in_flight == 0
    # Statuses in order with the data: gap, backfill_started, ..., backfill_done, per gap.
    codes = [s.status for s in seen.statuses if s.status in ("gap", "backfill_started", "backfill_done")]
    assert codes == ["gap", "backfill_started", "backfill_done"] * 2
    started = seen.status("backfill_started")[0]
    assert set(started.channels) == {f"T.{s}" for s in SYMBOLS}
    done = seen.status("backfill_done")
    assert sum(d.events for d in done) == len(backfilled_trades)  # type: ignore[attr-defined]
    assert all(d.duration_s is not None and d.duration_s >= 0 for d in done)  # type: ignore[attr-defined]


@pytest.mark.timeout(60)
def test_backfilled_events_of_a_symbol_come_after_its_gap_and_before_its_live_events(
    massive_server: MockMassiveServer, backfilled: Make, seen: Seen, publisher: Publisher
) -> None:
    backfilled([f"T.{s}" for s in SYMBOLS])
    publisher.start()
    _reconnect_with_loss(massive_server, seen, publisher, 1)
    publisher.stop()
    order = list(seen.order)
    gap_at = next(i for i, e in enumerate(order) if isinstance(e, mrt.StatusMessage) and e.status == "gap")
    for symbol in SYMBOLS:
        mine = [(i, e) for i, e in enumerate(order) if isinstance(e, mrt.EquityTrade) and e.symbol == symbol]
        rest = [i for i, e in mine if e.origin == "rest"]
        live_after = [i for i, e in mine if e.origin == "live" and i > gap_at]
        assert all(gap_at < i for i in rest)
        if rest and live_after:
            assert max(rest) < min(live_after), symbol
