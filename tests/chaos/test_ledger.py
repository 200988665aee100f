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
