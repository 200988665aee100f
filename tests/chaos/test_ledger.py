"""The chaos ledger itself (pure logic): it must catch every way of losing data silently."""

from __future__ import annotations

import pytest

import massive_rt as mrt
from tests.chaos._ledger import Ledger


def trade(sym: str, q: int) -> mrt.EquityTrade:
    return mrt.EquityTrade(symbol=sym, sequence_number=q, price=1.0, size=1, timestamp=q)


def gap(**marks: int) -> mrt.StatusMessage:
    return mrt.StatusMessage(status="gap", message="gap", last_seen=tuple(
        mrt.SymbolMark(symbol=sym, ev="T", timestamp=q, sequence=q) for sym, q in marks.items()))  # fmt: skip


def feed(*events: mrt.Event) -> Ledger:
    ledger = Ledger()
    for event in events:
        ledger(event)
    return ledger


def test_an_unbroken_stream_verifies() -> None:
    assert feed(trade("A", 1), trade("A", 2), trade("A", 3)).verify({"A": 3})["delivered"] == 3


def test_a_hole_inside_a_gap_window_starting_at_the_last_delivery_is_accounted_for() -> None:
    ledger = feed(trade("A", 1), trade("A", 2), gap(A=2), trade("A", 7))
    assert ledger.verify({"A": 7})["missing_in_windows"] == 4


def test_a_hole_counted_by_a_dropped_status_is_accounted_for() -> None:
    ledger = feed(trade("A", 1), mrt.StatusMessage(status="dropped", message="x", dropped=3), trade("A", 5))
    assert ledger.verify({"A": 5})["delivered"] == 2


@pytest.mark.parametrize(
    ("events", "problem"),
    [
        ((trade("A", 1), trade("A", 4)), "lost with no gap window"),  # silent loss
        ((trade("A", 1), gap(A=0), trade("A", 4)), "lost with no gap window"),  # window starts too late
        ((trade("A", 1), gap(B=1), trade("A", 4)), "lost with no gap window"),  # another symbol's window
        ((trade("A", 1), gap(A=1), trade("A", 2), trade("A", 5)), "lost with no gap window"),  # an old window
        ((trade("A", 1), mrt.StatusMessage(status="dropped", message="x", dropped=1), trade("A", 4)),
         "lost with no gap window"),  # fewer dropped than missing
        ((trade("A", 2), trade("A", 2)), "duplicate or reordered"),
        ((trade("A", 3), trade("A", 2)), "duplicate or reordered"),
    ],
)  # fmt: skip
def test_silent_loss_duplicates_and_reordering_are_caught(events: tuple[mrt.Event, ...], problem: str) -> None:
    with pytest.raises(AssertionError, match=problem):
        feed(*events).verify({"A": 5})


def test_a_missing_tail_is_caught() -> None:
    with pytest.raises(AssertionError, match="last delivered 2, published 3"):
        feed(trade("A", 1), trade("A", 2)).verify({"A": 3})


# ---------------------------------------------------------------------------- a counted ledger (through Redis)


def stream_gap(dropped: int) -> mrt.StatusMessage:
    """A RedisStreamSource's gap: no marks, an exact count."""
    return mrt.StatusMessage(status="gap", message=f"{dropped} entries vanished", dropped=dropped,
                             channels=("massive:stocks:T",))  # fmt: skip


def dropped(count: int) -> mrt.StatusMessage:
    return mrt.StatusMessage(status="dropped", message="x", dropped=count)


def counted(*events: mrt.Event, symbols: tuple[str, ...] = ("A", "B")) -> Ledger:
    ledger = Ledger(counted=True, symbols=symbols)
    for event in events:
        ledger(event)
    return ledger


def test_a_stream_gap_explains_the_holes_of_every_symbol_it_falls_between() -> None:
    # entries A1 B1 | A2 B2 A3 vanished | B3 A4 B4: the gap arrives before B3, the entry after the hole
    ledger = counted(trade("A", 1), trade("B", 1), stream_gap(3), trade("B", 3), trade("A", 4), trade("B", 4))
    report = ledger.verify({"A": 4, "B": 4})
    assert (report["delivered"], report["missing_in_windows"], report["reported_gap"]) == (5, 3, 3)
    assert ledger.missing("stream gap") == 3


def test_a_drop_report_may_trail_the_trades_after_its_hole() -> None:
    # the sink's dropped status travels on the status stream: it can arrive after the trades that follow
    ledger = counted(trade("A", 1), trade("B", 1), trade("A", 3), trade("B", 3), dropped(2))
    assert ledger.settled()
    assert ledger.verify({"A": 3, "B": 3})["reported_dropped"] == 2


def test_only_gaps_of_the_trade_streams_count_as_missing_trades() -> None:
    status_gap = mrt.StatusMessage(status="gap", message="1 entry vanished", dropped=1,
                                   channels=("massive:stocks:status",))  # fmt: skip
    ledger = Ledger(counted=True, symbols=("A",), trade_streams=("massive:stocks:T",))
    for event in (trade("A", 1), status_gap, stream_gap(2), trade("A", 4)):
        ledger(event)
    assert ledger.verify({"A": 4})["reported_gap"] == 2
    assert ledger.gaps_by_stream == {"massive:stocks:status": 1, "massive:stocks:T": 2}


def test_holes_at_the_start_count_when_the_symbols_start_at_one() -> None:
    ledger = counted(stream_gap(2), trade("A", 2), trade("B", 2))
    assert ledger.verify({"A": 2, "B": 2})["missing_in_windows"] == 2


@pytest.mark.parametrize(
    ("events", "problem"),
    [
        # a hole no report covers, a drop counted twice, a gap counting more than vanished
        ((trade("A", 1), trade("A", 3), trade("B", 1), trade("B", 3)), "2 trades missing, reported"),
        ((trade("A", 1), trade("A", 3), trade("B", 1), trade("B", 2), trade("B", 3), dropped(1), dropped(1)),
         "1 trades missing, reported"),
        ((trade("A", 1), trade("B", 1), stream_gap(2), trade("A", 3), trade("B", 2), trade("B", 3)),
         "1 trades missing, reported"),
        # the gap's count adds up, but a hole came before it with no drop reported to explain it
        ((trade("A", 1), trade("A", 3), stream_gap(1), trade("B", 1), trade("B", 2), trade("B", 3)),
         "no gap before them"),
        # a duplicate (a write retried under a new id) is caught, and opens no phantom hole
        ((trade("A", 1), trade("A", 2), trade("A", 1), trade("A", 3), trade("B", 1), trade("B", 2), trade("B", 3)),
         "1 delivered after 2"),
    ],
)  # fmt: skip
def test_a_counted_ledger_holds_the_reports_to_their_numbers(events: tuple[mrt.Event, ...], problem: str) -> None:
    with pytest.raises(AssertionError, match=problem):
        counted(*events).verify({"A": 3, "B": 3})


def test_a_duplicate_opens_no_phantom_hole() -> None:
    ledger = counted(trade("A", 1), trade("A", 2), trade("A", 1), trade("A", 3))
    assert ledger.problems == ["A: 1 delivered after 2 (duplicate or reordered)"]
    assert ledger.missing() == 0
